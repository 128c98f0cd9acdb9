//! The XenStore: a tree of nodes with Xen's permissions, watches and
//! transactions, driven by `xs_wire` requests from each domain's
//! connection. Pure logic, host-tested; `main.rs` moves the bytes between
//! the rings and this core.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

pub type DomId = u16;

pub use pv_abi::xenstore::{ABS_PATH_MAX, PAYLOAD_MAX, REL_PATH_MAX, msg};
/// Nodes a DomU may own.
pub const NODE_QUOTA: usize = 1000;
pub const WATCH_QUOTA: usize = 128;
pub const TRANSACTION_QUOTA: usize = 16;

/// Errors, named as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsError {
    Inval,
    Acces,
    NoEnt,
    Exist,
    Again,
    TooBig,
    Quota,
    NoSys,
}

impl XsError {
    pub fn name(self) -> &'static str {
        match self {
            Self::Inval => "EINVAL",
            Self::Acces => "EACCES",
            Self::NoEnt => "ENOENT",
            Self::Exist => "EEXIST",
            Self::Again => "EAGAIN",
            Self::TooBig => "E2BIG",
            Self::Quota => "EQUOTA",
            Self::NoSys => "ENOSYS",
        }
    }
}

type Result<T> = core::result::Result<T, XsError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    None,
    Read,
    Write,
    Both,
}

impl Access {
    fn letter(self) -> char {
        match self {
            Self::None => 'n',
            Self::Read => 'r',
            Self::Write => 'w',
            Self::Both => 'b',
        }
    }
    fn from_letter(c: char) -> Option<Self> {
        Some(match c {
            'n' => Self::None,
            'r' => Self::Read,
            'w' => Self::Write,
            'b' => Self::Both,
            _ => return None,
        })
    }
    fn reads(self) -> bool {
        matches!(self, Self::Read | Self::Both)
    }
    fn writes(self) -> bool {
        matches!(self, Self::Write | Self::Both)
    }
}

/// Xen's permission list: owner with the default for everyone else, then
/// per-domain grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Perms {
    pub owner: DomId,
    pub others: Access,
    pub acl: Vec<(DomId, Access)>,
}

impl Perms {
    /// `n0`: Dom0's alone.
    pub fn dom0_private() -> Self {
        Self {
            owner: 0,
            others: Access::None,
            acl: Vec::new(),
        }
    }

    /// `n0,rN`: Dom0's, readable by `dom`.
    pub fn dom0_readable_by(dom: DomId) -> Self {
        Self {
            owner: 0,
            others: Access::None,
            acl: alloc::vec![(dom, Access::Read)],
        }
    }

    fn access(&self, dom: DomId) -> Access {
        if dom == 0 || dom == self.owner {
            return Access::Both;
        }
        self.acl
            .iter()
            .find(|(d, _)| *d == dom)
            .map_or(self.others, |(_, a)| *a)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = format!("{}{}\0", self.others.letter(), self.owner).into_bytes();
        for (d, a) in &self.acl {
            out.extend_from_slice(format!("{}{}\0", a.letter(), d).as_bytes());
        }
        out
    }

    fn parse(payload: &[u8]) -> Result<Self> {
        let mut entries = payload
            .split(|&b| b == 0)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let s = core::str::from_utf8(e).map_err(|_| XsError::Inval)?;
                let mut chars = s.chars();
                let access = chars
                    .next()
                    .and_then(Access::from_letter)
                    .ok_or(XsError::Inval)?;
                let dom: DomId = chars.as_str().parse().map_err(|_| XsError::Inval)?;
                Ok((dom, access))
            });
        let (owner, others) = entries.next().ok_or(XsError::Inval)??;
        let acl = entries.collect::<Result<Vec<_>>>()?;
        Ok(Self { owner, others, acl })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    value: Vec<u8>,
    perms: Perms,
    /// Store generation of the last change, for transaction conflicts.
    changed: u64,
}

type Tree = BTreeMap<String, Node>;

struct Transaction {
    owner: DomId,
    tree: Tree,
    /// Paths read or written, with the generation they had in the snapshot
    /// (None: absent).
    touched: BTreeMap<String, Option<u64>>,
    written: BTreeSet<String>,
}

struct Watch {
    conn: DomId,
    path: String,
    token: String,
    /// The watch was given relative to the connection's home: events carry
    /// relative paths.
    relative: bool,
}

/// A message to send back: (type, req_id, tx_id, payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub kind: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub payload: Vec<u8>,
}

/// A ring a domain was given: its event channel (the domain's own port
/// number) and the page's GFN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingInfo {
    pub port: u32,
    pub gfn: u64,
}

/// What the toolstack knows of a new DomU, for [`Store::introduce_domain`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    pub domid: DomId,
    pub name: String,
    /// vCPUs 0..vcpus are written as online (at least vCPU 0).
    pub vcpus: u32,
    /// Memory size; unknown means no `~/memory` nodes (a wrong target
    /// would make the DomU's balloon driver give memory back).
    pub mem_kib: Option<u64>,
    pub store: RingInfo,
    /// The PV console ring, if the domain has one.
    pub console: Option<RingInfo>,
}

/// A shutdown request written to a DomU's `control/shutdown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    Poweroff,
    Reboot,
}

impl Shutdown {
    /// The value written, as libxl writes it.
    pub fn value(self) -> &'static str {
        match self {
            Self::Poweroff => "poweroff",
            Self::Reboot => "reboot",
        }
    }
}

/// The domain's VM uuid. Made up, deterministically from the domain id
/// (Xen's toolstack uses the domain handle it was given): a version-4
/// layout with the id in the last group, e.g. domain 1 is
/// `00000000-0000-4000-8000-000000000001`.
pub fn vm_uuid(dom: DomId) -> String {
    format!("00000000-0000-4000-8000-{dom:012x}")
}

pub struct Store {
    tree: Tree,
    generation: u64,
    watches: Vec<Watch>,
    transactions: BTreeMap<u32, Transaction>,
    next_tx: u32,
    /// Watch events to deliver, per connection.
    pub events: VecDeque<(DomId, Reply)>,
}

pub fn home(dom: DomId) -> String {
    format!("/local/domain/{dom}")
}

fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    Some(match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "/",
    })
}

fn is_below(path: &str, ancestor: &str) -> bool {
    path == ancestor
        || ancestor == "/"
        || (path.starts_with(ancestor) && path.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '@' | '.')
}

/// Makes an absolute, validated path.
pub fn canonical(conn: DomId, path: &str) -> Result<(String, bool)> {
    if path.is_empty() || !path.chars().all(valid_char) || path.contains("//") {
        return Err(XsError::Inval);
    }
    let (abs, relative) = if path.starts_with('/') {
        if path.len() > ABS_PATH_MAX {
            return Err(XsError::Inval);
        }
        (path.to_string(), false)
    } else {
        if path.len() > REL_PATH_MAX {
            return Err(XsError::Inval);
        }
        (format!("{}/{path}", home(conn)), true)
    };
    let abs = if abs.len() > 1 {
        abs.trim_end_matches('/').to_string()
    } else {
        abs
    };
    Ok((abs, relative))
}

fn nul_args(payload: &[u8]) -> Vec<&[u8]> {
    let body = payload.strip_suffix(b"\0").unwrap_or(payload);
    body.split(|&b| b == 0).collect()
}

fn text(bytes: &[u8]) -> Result<&str> {
    core::str::from_utf8(bytes).map_err(|_| XsError::Inval)
}

/// How much the store holds (Dom0 prints it as domains come and go: a
/// soak checks that it returns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreCounts {
    pub nodes: usize,
    pub watches: usize,
    pub transactions: usize,
}

impl core::fmt::Display for StoreCounts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} nodes, {} watches, {} transactions",
            self.nodes, self.watches, self.transactions
        )
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Self {
        let mut tree = Tree::new();
        let root = Perms {
            owner: 0,
            others: Access::Read,
            acl: Vec::new(),
        };
        for path in ["/", "/local", "/local/domain"] {
            tree.insert(
                path.to_string(),
                Node {
                    value: Vec::new(),
                    perms: root.clone(),
                    changed: 0,
                },
            );
        }
        Self {
            tree,
            generation: 0,
            watches: Vec::new(),
            transactions: BTreeMap::new(),
            next_tx: 1,
            events: VecDeque::new(),
        }
    }

    fn owned_nodes(tree: &Tree, dom: DomId) -> usize {
        tree.values().filter(|n| n.perms.owner == dom).count()
    }

    /// Creates a domain's home, owned by it (what Dom0 does when a DomU
    /// starts) and fires `@introduceDomain`.
    pub fn introduce(&mut self, dom: DomId) {
        self.generation += 1;
        self.make_home(dom);
        self.fire("@introduceDomain", None);
    }

    /// The home and `~/domid`. Unlike Xen (whose toolstack makes the home
    /// `n0,r1`), the home belongs to the domain, so that it may create
    /// nodes directly below it; everything the toolstack writes below it
    /// has Xen's permissions.
    fn make_home(&mut self, dom: DomId) {
        let perms = Perms {
            owner: dom,
            others: Access::None,
            acl: Vec::new(),
        };
        self.tree.insert(
            home(dom),
            Node {
                value: Vec::new(),
                perms,
                changed: self.generation,
            },
        );
        // As Xen's toolstack does: the domain finds its id under its home
        // (read-only to it).
        self.tree.insert(
            format!("{}/domid", home(dom)),
            Node {
                value: format!("{dom}").into_bytes(),
                perms: Perms::dom0_readable_by(dom),
                changed: self.generation,
            },
        );
    }

    /// Sets a node as Dom0 would (value and permissions, whatever was
    /// there); missing ancestors become Dom0-private directories (`n0`).
    fn put(&mut self, path: &str, value: &[u8], perms: Perms) {
        let mut missing = Vec::new();
        let mut ancestor = parent(path);
        while let Some(p) = ancestor {
            if self.tree.contains_key(p) {
                break;
            }
            missing.push(p.to_string());
            ancestor = parent(p);
        }
        for p in missing.into_iter().rev() {
            self.tree.insert(
                p,
                Node {
                    value: Vec::new(),
                    perms: Perms::dom0_private(),
                    changed: self.generation,
                },
            );
        }
        self.tree.insert(
            path.to_string(),
            Node {
                value: value.to_vec(),
                perms,
                changed: self.generation,
            },
        );
    }

    /// Introduces a new DomU with everything Xen's toolstack writes for
    /// it before it runs (LINUX-PVH.md §10), with the same permissions,
    /// then fires `@introduceDomain`.
    pub fn introduce_domain(&mut self, info: &DomainInfo) {
        let dom = info.domid;
        self.generation += 1;
        self.make_home(dom);
        let h = home(dom);
        let ro = || Perms::dom0_readable_by(dom);
        // Owned by the DomU, which may write it; nobody else reads it.
        let guest = || Perms {
            owner: dom,
            others: Access::None,
            acl: Vec::new(),
        };
        let uuid = vm_uuid(dom);
        let vm = format!("/vm/{uuid}");
        let mut nodes: Vec<(String, String, Perms)> = alloc::vec![
            ("/vm".into(), String::new(), Perms::dom0_private()),
            (vm.clone(), String::new(), ro()),
            (format!("{vm}/name"), info.name.clone(), ro()),
            (format!("{vm}/uuid"), uuid.clone(), ro()),
            (format!("{h}/vm"), vm.clone(), ro()),
            (format!("{h}/name"), info.name.clone(), ro()),
            (format!("{h}/cpu"), String::new(), ro()),
        ];
        for cpu in 0..info.vcpus.max(1) {
            nodes.push((format!("{h}/cpu/{cpu}"), String::new(), ro()));
            nodes.push((format!("{h}/cpu/{cpu}/availability"), "online".into(), ro()));
        }
        if let Some(kib) = info.mem_kib {
            nodes.push((format!("{h}/memory"), String::new(), ro()));
            nodes.push((format!("{h}/memory/static-max"), format!("{kib}"), ro()));
            nodes.push((format!("{h}/memory/target"), format!("{kib}"), ro()));
            nodes.push((format!("{h}/memory/videoram"), "0".into(), ro()));
        }
        nodes.push((format!("{h}/device"), String::new(), ro()));
        nodes.push((format!("{h}/device/suspend"), String::new(), ro()));
        nodes.push((
            format!("{h}/device/suspend/event-channel"),
            String::new(),
            guest(),
        ));
        nodes.push((format!("{h}/control"), String::new(), ro()));
        for leaf in [
            "shutdown",
            "sysrq",
            "feature-poweroff",
            "feature-reboot",
            "feature-suspend",
        ] {
            nodes.push((format!("{h}/control/{leaf}"), String::new(), guest()));
        }
        for leaf in [
            "platform-feature-multiprocessor-suspend",
            "platform-feature-xs_reset_watches",
        ] {
            nodes.push((format!("{h}/control/{leaf}"), "1".into(), ro()));
        }
        for dir in ["data", "drivers", "feature", "attr", "error"] {
            nodes.push((format!("{h}/{dir}"), String::new(), guest()));
        }
        nodes.push((format!("{h}/store"), String::new(), ro()));
        nodes.push((
            format!("{h}/store/port"),
            format!("{}", info.store.port),
            ro(),
        ));
        nodes.push((
            format!("{h}/store/ring-ref"),
            format!("{}", info.store.gfn),
            ro(),
        ));
        if let Some(console) = info.console {
            let backend = format!("{}/backend/console/{dom}/0", home(0));
            nodes.push((format!("{h}/console"), String::new(), ro()));
            nodes.push((format!("{h}/console/backend"), backend.clone(), ro()));
            nodes.push((
                format!("{h}/console/backend-id"),
                "0".into(),
                Perms {
                    owner: dom,
                    others: Access::None,
                    acl: alloc::vec![(0, Access::Read)],
                },
            ));
            nodes.push((format!("{h}/console/limit"), "1048576".into(), ro()));
            nodes.push((format!("{h}/console/type"), "xenconsoled".into(), ro()));
            nodes.push((format!("{h}/console/output"), "pty".into(), ro()));
            nodes.push((
                format!("{h}/console/port"),
                format!("{}", console.port),
                ro(),
            ));
            nodes.push((
                format!("{h}/console/ring-ref"),
                format!("{}", console.gfn),
                ro(),
            ));
            // `backend`, `backend/console` and `backend/console/N` are n0
            // (made by `put`).
            nodes.push((backend.clone(), String::new(), ro()));
            nodes.push((format!("{backend}/frontend"), format!("{h}/console"), ro()));
            nodes.push((format!("{backend}/frontend-id"), format!("{dom}"), ro()));
            nodes.push((format!("{backend}/online"), "1".into(), ro()));
            nodes.push((format!("{backend}/state"), "1".into(), ro()));
            nodes.push((format!("{backend}/protocol"), "vt100".into(), ro()));
        }
        let mut changed = alloc::vec![home(dom), format!("{h}/domid")];
        for (path, value, perms) in nodes {
            self.put(&path, value.as_bytes(), perms);
            changed.push(path);
        }
        self.fire_changes(&changed);
        self.fire("@introduceDomain", None);
    }

    /// Sets nodes as the toolstack does (value and permissions, whatever
    /// was there; missing ancestors become `n0` directories) and fires
    /// their watches.
    pub fn toolstack_put(&mut self, nodes: &[(String, String, Perms)]) {
        self.generation += 1;
        let mut changed = Vec::new();
        for (path, value, perms) in nodes {
            self.put(path, value.as_bytes(), perms.clone());
            changed.push(path.clone());
        }
        self.fire_changes(&changed);
    }

    /// A node's value as Dom0 sees it (every node), if it exists and is
    /// UTF-8.
    pub fn local_read(&self, path: &str) -> Option<String> {
        let node = self.tree.get(path)?;
        String::from_utf8(node.value.clone()).ok()
    }

    /// Dom0 writes `value` (a new node gets its parent's permissions, as
    /// for any writer) and the watches fire.
    pub fn local_write(&mut self, path: &str, value: &str) -> Result<()> {
        let changed = self.write(0, 0, path, Some(value.as_bytes()))?;
        self.fire_changes(&changed);
        Ok(())
    }

    /// Dom0 removes `path` and everything below it; watches fire.
    pub fn local_rm(&mut self, path: &str) -> Result<()> {
        let changed = self.rm(0, 0, path)?;
        self.fire_changes(&changed);
        Ok(())
    }

    /// Asks a DomU to shut down as `xl shutdown` / `xl reboot` do: Dom0
    /// writes the reason to its `control/shutdown` (the DomU watches it).
    /// `NoEnt` if the domain has no `control` directory.
    pub fn request_shutdown(&mut self, dom: DomId, kind: Shutdown) -> Result<()> {
        let control = format!("{}/control", home(dom));
        if !self.tree.contains_key(&control) {
            return Err(XsError::NoEnt);
        }
        let changed = self.write(
            0,
            0,
            &format!("{control}/shutdown"),
            Some(kind.value().as_bytes()),
        )?;
        self.fire_changes(&changed);
        Ok(())
    }

    /// XS_RESET_WATCHES: the connection's watches go, with its
    /// transactions and undelivered watch events (as C xenstored does).
    fn reset_watches(&mut self, conn: DomId) {
        self.watches.retain(|w| w.conn != conn);
        self.transactions.retain(|_, t| t.owner != conn);
        self.events.retain(|(c, _)| *c != conn);
    }

    /// The domain is gone (Xen's toolstack on destroy): its home, its
    /// `/vm/<uuid>` and its backend directories go, with its watches and
    /// transactions, and
    /// `@releaseDomain` fires — the store holds what it held before the
    /// domain came.
    pub fn remove_domain(&mut self, dom: DomId) {
        let vm = self.local_read(&format!("{}/vm", home(dom)));
        if let Some(vm) = vm.filter(|v| v.starts_with("/vm/")) {
            let _ = self.local_rm(&vm);
        }
        // Its backend directories under Dom0 (the console's, which
        // `introduce_domain` wrote; disks' and interfaces' if their
        // backends left any).
        const BACKENDS: &str = "/local/domain/0/backend/";
        let theirs: Vec<String> = self
            .tree
            .range::<str, _>((
                core::ops::Bound::Excluded(BACKENDS),
                core::ops::Bound::Unbounded,
            ))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(BACKENDS))
            .filter(|k| !k[BACKENDS.len()..].contains('/'))
            .map(|kind| format!("{kind}/{dom}"))
            .filter(|path| self.tree.contains_key(path))
            .collect();
        for path in theirs {
            let _ = self.local_rm(&path);
        }
        let _ = self.local_rm(&home(dom));
        self.release(dom);
    }

    /// What the store holds now: nodes, watches, open transactions.
    pub fn counts(&self) -> StoreCounts {
        StoreCounts {
            nodes: self.tree.len(),
            watches: self.watches.len(),
            transactions: self.transactions.len(),
        }
    }

    /// Forgets a domain's watches and transactions, fires `@releaseDomain`.
    pub fn release(&mut self, dom: DomId) {
        self.watches.retain(|w| w.conn != dom);
        self.transactions.retain(|_, t| t.owner != dom);
        self.events.retain(|(c, _)| *c != dom);
        self.fire("@releaseDomain", None);
    }

    fn tree_for(&mut self, conn: DomId, tx: u32) -> Result<&mut Tree> {
        if tx == 0 {
            return Ok(&mut self.tree);
        }
        match self.transactions.get_mut(&tx) {
            Some(t) if t.owner == conn => Ok(&mut t.tree),
            _ => Err(XsError::NoEnt),
        }
    }

    fn touch(&mut self, tx: u32, path: &str, written: bool) {
        if let Some(t) = self.transactions.get_mut(&tx) {
            if !t.touched.contains_key(path) {
                let generation = t.tree.get(path).map(|n| n.changed);
                t.touched.insert(path.to_string(), generation);
            }
            if written {
                t.written.insert(path.to_string());
            }
        }
    }

    fn read(&mut self, conn: DomId, tx: u32, path: &str) -> Result<Vec<u8>> {
        self.touch(tx, path, false);
        let tree = self.tree_for(conn, tx)?;
        let node = tree.get(path).ok_or(XsError::NoEnt)?;
        if !node.perms.access(conn).reads() {
            return Err(XsError::Acces);
        }
        Ok(node.value.clone())
    }

    fn directory(&mut self, conn: DomId, tx: u32, path: &str) -> Result<Vec<u8>> {
        self.touch(tx, path, false);
        let tree = self.tree_for(conn, tx)?;
        let node = tree.get(path).ok_or(XsError::NoEnt)?;
        if !node.perms.access(conn).reads() {
            return Err(XsError::Acces);
        }
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        let mut out = Vec::new();
        for key in tree
            .range(prefix.clone()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&prefix))
        {
            let rest = &key[prefix.len()..];
            if !rest.is_empty() && !rest.contains('/') {
                out.extend_from_slice(rest.as_bytes());
                out.push(0);
            }
        }
        Ok(out)
    }

    /// Creates `path` and missing ancestors (new nodes take their
    /// parent's permissions with the creator as owner); sets the value if
    /// given. Returns the paths created or changed.
    fn write(
        &mut self,
        conn: DomId,
        tx: u32,
        path: &str,
        value: Option<&[u8]>,
    ) -> Result<Vec<String>> {
        if value.is_some_and(|v| v.len() > PAYLOAD_MAX) {
            return Err(XsError::TooBig);
        }
        self.touch(tx, path, true);
        self.generation += 1;
        let generation = self.generation;
        let tree = self.tree_for(conn, tx)?;
        if let Some(node) = tree.get_mut(path) {
            if !node.perms.access(conn).writes() {
                return Err(XsError::Acces);
            }
            if let Some(v) = value {
                node.value = v.to_vec();
                node.changed = generation;
            }
            return Ok(alloc::vec![path.to_string()]);
        }
        let mut missing = alloc::vec![path.to_string()];
        let mut ancestor = parent(path);
        let base = loop {
            let p = ancestor.ok_or(XsError::NoEnt)?;
            if let Some(node) = tree.get(p) {
                break node.perms.clone();
            }
            missing.push(p.to_string());
            ancestor = parent(p);
        };
        if !base.access(conn).writes() {
            return Err(XsError::Acces);
        }
        if conn != 0 && Self::owned_nodes(tree, conn) + missing.len() > NODE_QUOTA {
            return Err(XsError::Quota);
        }
        let perms = Perms {
            owner: if conn == 0 { base.owner } else { conn },
            ..base
        };
        for p in missing.iter().rev() {
            let v = if p == path {
                value.unwrap_or(&[]).to_vec()
            } else {
                Vec::new()
            };
            tree.insert(
                p.clone(),
                Node {
                    value: v,
                    perms: perms.clone(),
                    changed: generation,
                },
            );
        }
        Ok(missing)
    }

    fn rm(&mut self, conn: DomId, tx: u32, path: &str) -> Result<Vec<String>> {
        if path == "/" {
            return Err(XsError::Inval);
        }
        self.touch(tx, path, true);
        let tree = self.tree_for(conn, tx)?;
        let node = tree.get(path).ok_or(XsError::NoEnt)?;
        let parent_ok = parent(path)
            .and_then(|p| tree.get(p))
            .is_some_and(|p| p.perms.access(conn).writes());
        if !node.perms.access(conn).writes() && !parent_ok {
            return Err(XsError::Acces);
        }
        let doomed: Vec<String> = tree.keys().filter(|k| is_below(k, path)).cloned().collect();
        for k in &doomed {
            tree.remove(k);
        }
        self.generation += 1;
        Ok(doomed)
    }

    fn get_perms(&mut self, conn: DomId, tx: u32, path: &str) -> Result<Vec<u8>> {
        self.touch(tx, path, false);
        let tree = self.tree_for(conn, tx)?;
        let node = tree.get(path).ok_or(XsError::NoEnt)?;
        if !node.perms.access(conn).reads() {
            return Err(XsError::Acces);
        }
        Ok(node.perms.encode())
    }

    fn set_perms(&mut self, conn: DomId, tx: u32, path: &str, perms: Perms) -> Result<()> {
        self.touch(tx, path, true);
        self.generation += 1;
        let generation = self.generation;
        let tree = self.tree_for(conn, tx)?;
        let node = tree.get_mut(path).ok_or(XsError::NoEnt)?;
        if conn != 0 && node.perms.owner != conn {
            return Err(XsError::Acces);
        }
        // Only Dom0 may give a node away.
        if conn != 0 && perms.owner != conn {
            return Err(XsError::Acces);
        }
        node.perms = perms;
        node.changed = generation;
        Ok(())
    }

    /// Queues watch events for a change at `path` (whose readers are
    /// judged by `perms`, the node's permissions before or after).
    fn fire(&mut self, path: &str, perms: Option<&Perms>) {
        for w in &self.watches {
            let hit = if path.starts_with('@') {
                w.path == path
            } else {
                is_below(path, &w.path)
            };
            if !hit || perms.is_some_and(|p| !p.access(w.conn).reads()) {
                continue;
            }
            let shown = if w.relative {
                path.strip_prefix(&format!("{}/", home(w.conn)))
                    .unwrap_or(path)
                    .to_string()
            } else {
                path.to_string()
            };
            let mut payload = shown.into_bytes();
            payload.push(0);
            payload.extend_from_slice(w.token.as_bytes());
            payload.push(0);
            self.events.push_back((
                w.conn,
                Reply {
                    kind: msg::WATCH_EVENT,
                    req_id: 0,
                    tx_id: 0,
                    payload,
                },
            ));
        }
    }

    fn fire_changes(&mut self, paths: &[String]) {
        for p in paths {
            let perms = self.tree.get(p).map(|n| n.perms.clone());
            self.fire(p, perms.as_ref());
        }
    }

    fn watch(&mut self, conn: DomId, path: &str, token: &str) -> Result<()> {
        let (abs, relative) = if path.starts_with('@') {
            (path.to_string(), false)
        } else {
            canonical(conn, path)?
        };
        if self.watches.iter().filter(|w| w.conn == conn).count() >= WATCH_QUOTA {
            return Err(XsError::Quota);
        }
        if self
            .watches
            .iter()
            .any(|w| w.conn == conn && w.path == abs && w.token == token)
        {
            return Err(XsError::Exist);
        }
        self.watches.push(Watch {
            conn,
            path: abs.clone(),
            token: token.to_string(),
            relative,
        });
        // A new watch fires once at once, as in Xen.
        let shown = if relative { path.to_string() } else { abs };
        let mut payload = shown.into_bytes();
        payload.push(0);
        payload.extend_from_slice(token.as_bytes());
        payload.push(0);
        self.events.push_back((
            conn,
            Reply {
                kind: msg::WATCH_EVENT,
                req_id: 0,
                tx_id: 0,
                payload,
            },
        ));
        Ok(())
    }

    fn unwatch(&mut self, conn: DomId, path: &str, token: &str) -> Result<()> {
        let abs = if path.starts_with('@') {
            path.to_string()
        } else {
            canonical(conn, path)?.0
        };
        let before = self.watches.len();
        self.watches
            .retain(|w| !(w.conn == conn && w.path == abs && w.token == token));
        if self.watches.len() == before {
            Err(XsError::NoEnt)
        } else {
            Ok(())
        }
    }

    fn transaction_start(&mut self, conn: DomId) -> Result<u32> {
        if self
            .transactions
            .values()
            .filter(|t| t.owner == conn)
            .count()
            >= TRANSACTION_QUOTA
        {
            return Err(XsError::Quota);
        }
        let id = self.next_tx;
        self.next_tx = self.next_tx.wrapping_add(1).max(1);
        self.transactions.insert(
            id,
            Transaction {
                owner: conn,
                tree: self.tree.clone(),
                touched: BTreeMap::new(),
                written: BTreeSet::new(),
            },
        );
        Ok(id)
    }

    fn transaction_end(&mut self, conn: DomId, tx: u32, commit: bool) -> Result<()> {
        match self.transactions.get(&tx) {
            Some(t) if t.owner == conn => {}
            _ => return Err(XsError::NoEnt),
        }
        let t = self.transactions.remove(&tx).ok_or(XsError::NoEnt)?;
        if !commit {
            return Ok(());
        }
        // Conflict: something the transaction looked at changed meanwhile.
        for (path, seen) in &t.touched {
            let now = self.tree.get(path).map(|n| n.changed);
            if now != *seen {
                return Err(XsError::Again);
            }
        }
        self.generation += 1;
        let mut changed = Vec::new();
        for path in &t.written {
            let below: Vec<String> = t
                .tree
                .keys()
                .filter(|k| is_below(k, path))
                .cloned()
                .collect();
            let gone: Vec<String> = self
                .tree
                .keys()
                .filter(|k| is_below(k, path) && !t.tree.contains_key(*k))
                .cloned()
                .collect();
            for k in gone {
                self.tree.remove(&k);
                changed.push(k);
            }
            for k in below {
                let mut node = t.tree[&k].clone();
                node.changed = self.generation;
                self.tree.insert(k.clone(), node);
                changed.push(k);
            }
        }
        changed.sort();
        changed.dedup();
        self.fire_changes(&changed);
        Ok(())
    }

    /// Handles one request from domain `conn`; the reply is returned and
    /// watch events are queued in `events`.
    pub fn handle(
        &mut self,
        conn: DomId,
        kind: u32,
        req_id: u32,
        tx: u32,
        payload: &[u8],
    ) -> Reply {
        let result = self.dispatch(conn, kind, tx, payload);
        match result {
            Ok(body) => Reply {
                kind,
                req_id,
                tx_id: tx,
                payload: body,
            },
            Err(e) => {
                let mut body = e.name().as_bytes().to_vec();
                body.push(0);
                Reply {
                    kind: msg::ERROR,
                    req_id,
                    tx_id: tx,
                    payload: body,
                }
            }
        }
    }

    fn dispatch(&mut self, conn: DomId, kind: u32, tx: u32, payload: &[u8]) -> Result<Vec<u8>> {
        if payload.len() > PAYLOAD_MAX {
            return Err(XsError::TooBig);
        }
        let ok = || b"OK\0".to_vec();
        let args = nul_args(payload);
        let path_arg = || -> Result<String> {
            Ok(canonical(conn, text(args.first().copied().unwrap_or(b""))?)?.0)
        };
        match kind {
            msg::READ => self.read(conn, tx, &path_arg()?),
            msg::DIRECTORY => self.directory(conn, tx, &path_arg()?),
            msg::GET_PERMS => self.get_perms(conn, tx, &path_arg()?),
            msg::WRITE => {
                let at = payload.iter().position(|&b| b == 0).ok_or(XsError::Inval)?;
                let path = canonical(conn, text(&payload[..at])?)?.0;
                let changed = self.write(conn, tx, &path, Some(&payload[at + 1..]))?;
                if tx == 0 {
                    self.fire_changes(&changed);
                }
                Ok(ok())
            }
            msg::MKDIR => {
                let path = path_arg()?;
                let changed = self.write(conn, tx, &path, None)?;
                if tx == 0 {
                    self.fire_changes(&changed);
                }
                Ok(ok())
            }
            msg::RM => {
                let path = path_arg()?;
                let perms = self.tree.get(&path).map(|n| n.perms.clone());
                let removed = self.rm(conn, tx, &path)?;
                if tx == 0 {
                    for p in removed {
                        self.fire(&p, perms.as_ref());
                    }
                }
                Ok(ok())
            }
            msg::SET_PERMS => {
                let at = payload.iter().position(|&b| b == 0).ok_or(XsError::Inval)?;
                let path = canonical(conn, text(&payload[..at])?)?.0;
                let perms = Perms::parse(&payload[at + 1..])?;
                self.set_perms(conn, tx, &path, perms)?;
                if tx == 0 {
                    self.fire_changes(&[path]);
                }
                Ok(ok())
            }
            msg::WATCH | msg::UNWATCH => {
                let (path, token) = match args.as_slice() {
                    [p, t, ..] => (text(p)?, text(t)?),
                    _ => return Err(XsError::Inval),
                };
                if kind == msg::WATCH {
                    self.watch(conn, path, token)?
                } else {
                    self.unwatch(conn, path, token)?
                }
                Ok(ok())
            }
            msg::TRANSACTION_START => {
                let id = self.transaction_start(conn)?;
                Ok(format!("{id}\0").into_bytes())
            }
            msg::TRANSACTION_END => {
                let commit = match args.first().copied() {
                    Some(b"T") => true,
                    Some(b"F") => false,
                    _ => return Err(XsError::Inval),
                };
                self.transaction_end(conn, tx, commit)?;
                Ok(ok())
            }
            msg::GET_DOMAIN_PATH => {
                let dom: DomId = text(args.first().copied().unwrap_or(b""))?
                    .parse()
                    .map_err(|_| XsError::Inval)?;
                Ok(format!("{}\0", home(dom)).into_bytes())
            }
            msg::INTRODUCE | msg::RELEASE => {
                if conn != 0 {
                    return Err(XsError::Acces);
                }
                let dom: DomId = text(args.first().copied().unwrap_or(b""))?
                    .parse()
                    .map_err(|_| XsError::Inval)?;
                if kind == msg::INTRODUCE {
                    self.introduce(dom)
                } else {
                    self.release(dom)
                }
                Ok(ok())
            }
            msg::RESET_WATCHES => {
                self.reset_watches(conn);
                Ok(ok())
            }
            _ => Err(XsError::NoSys),
        }
    }
}

/// Collects `xs_wire` messages from a byte stream that arrives in pieces.
#[derive(Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
}

/// A complete request: (type, req_id, tx_id, payload).
pub type Frame = (u32, u32, u32, Vec<u8>);

impl FrameReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message; `Err` if the peer sent an impossible
    /// length (the connection is then unusable).
    pub fn next_frame(&mut self) -> core::result::Result<Option<Frame>, XsError> {
        if self.buffer.len() < 16 {
            return Ok(None);
        }
        let word = |i: usize| {
            u32::from_le_bytes([
                self.buffer[i],
                self.buffer[i + 1],
                self.buffer[i + 2],
                self.buffer[i + 3],
            ])
        };
        let (kind, req_id, tx, len) = (word(0), word(4), word(8), word(12) as usize);
        if len > PAYLOAD_MAX {
            return Err(XsError::TooBig);
        }
        if self.buffer.len() < 16 + len {
            return Ok(None);
        }
        let payload = self.buffer[16..16 + len].to_vec();
        self.buffer.drain(..16 + len);
        Ok(Some((kind, req_id, tx, payload)))
    }
}

/// Encodes a reply for the ring.
pub fn encode(reply: &Reply) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + reply.payload.len());
    for w in [
        reply.kind,
        reply.req_id,
        reply.tx_id,
        reply.payload.len() as u32,
    ] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&reply.payload);
    out
}

#[cfg(test)]
mod tests;
