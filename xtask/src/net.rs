//! Networks: the MAC addresses of DomUs' virtual interfaces (`--domu
//! …,vif` and `vif=MAC`, Xen's `vif` devices, which Dom0's netback
//! serves), and the machine's uplink (`cargo xtask run --net`): a QEMU
//! user-mode network reached through a virtio-net NIC that Dom0 drives.
//!
//! Dom0 learns each interface from a `pavise.vif=DOMID:HANDLE:MAC` word,
//! the MAC written with `-` because `:` separates the fields
//! (`pavise.vif=1:0:00-16-3e-00-01-00`), and the uplink NIC's PCI slot
//! from `pavise.uplink=SLOT` (see [`crate::domains::dom0_cmdline_for`]).

use std::ffi::OsString;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::disk;
use crate::error::{Error, Result};

/// Xen's organizationally unique identifier: the first three bytes of the
/// MACs Xen's toolstack gives guests' interfaces.
pub const XEN_OUI: [u8; 3] = [0x00, 0x16, 0x3e];

/// Interfaces one DomU can have: handles 0 to 15.
pub const MAX_VIFS_PER_DOMAIN: usize = 16;

/// The prefix of the word on Dom0's command line that gives it one DomU
/// interface: `pavise.vif=DOMID:HANDLE:MAC` (see [`Interface::dom0_word`]).
pub const VIF_WORD: &str = "pavise.vif=";

/// The prefix of the word on Dom0's command line that names the uplink
/// NIC's PCI slot: `pavise.uplink=SLOT`, SLOT in hex.
pub const UPLINK_WORD: &str = "pavise.uplink=";

/// The PCI device number (bus 0, function 0) of the uplink's virtio-net
/// NIC: clear of q35's own devices (the host bridge in 0, VGA in 1, the
/// default NIC in 2, which `-netdev` replaces, the ICH9 functions in
/// 0x1f) and below the disks' slots ([`disk::FIRST_SLOT`] on).
pub const UPLINK_SLOT: u8 = 0x08;
const _: () = assert!(UPLINK_SLOT < disk::FIRST_SLOT);

/// The uplink NIC's MAC address (QEMU's usual first one).
pub const UPLINK_MAC: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

/// The QEMU id of the uplink's network back end.
pub const UPLINK_NETDEV_ID: &str = "uplink";

/// The uplink network, QEMU user networking's default: 10.0.2.0/24.
pub const UPLINK_NETWORK: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 0);
/// The uplink network's prefix length.
pub const UPLINK_PREFIX: u8 = 24;
/// The host as the uplink network sees it: the gateway.
pub const UPLINK_HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// QEMU's DNS relay on the uplink network.
pub const UPLINK_DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// The first address QEMU's DHCP server hands out on the uplink network.
pub const UPLINK_DHCP_START: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The MAC Xen's toolstack would give interface `handle` of domain
    /// `domid`: 00:16:3e:00:DOMID:HANDLE (one byte each), if both fit in
    /// a byte.
    pub fn xen_default(domid: usize, handle: usize) -> Option<Self> {
        let domid = u8::try_from(domid).ok()?;
        let handle = u8::try_from(handle).ok()?;
        let [a, b, c] = XEN_OUI;
        Some(Self([a, b, c, 0x00, domid, handle]))
    }

    /// Whether it is a group address (the lowest bit of its first byte).
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 != 0
    }

    /// Whether it is 00:00:00:00:00:00.
    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }

    /// Checks that an interface can have it: not multicast, not all zeros.
    pub fn check(self) -> Result<Self, MacError> {
        if self.is_multicast() {
            Err(MacError::Multicast { mac: self })
        } else if self.is_zero() {
            Err(MacError::Zero)
        } else {
            Ok(self)
        }
    }

    /// As Dom0's command line takes it: `00-16-3e-00-01-00`.
    pub fn dashed(self) -> String {
        self.with_separator('-')
    }

    fn with_separator(self, separator: char) -> String {
        let pairs: Vec<String> = self.0.iter().map(|b| format!("{b:02x}")).collect();
        pairs.join(&separator.to_string())
    }
}

impl fmt::Display for Mac {
    /// `00:16:3e:00:01:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_separator(':'))
    }
}

impl FromStr for Mac {
    type Err = MacError;

    /// Six two-digit hex numbers separated by `:` (either case), which an
    /// interface can have ([`Mac::check`]).
    fn from_str(text: &str) -> Result<Self, MacError> {
        let malformed = || MacError::Malformed {
            text: text.to_owned(),
        };
        let mut bytes = [0u8; 6];
        let mut pairs = text.split(':');
        for byte in &mut bytes {
            let pair = pairs.next().ok_or_else(malformed)?;
            if pair.len() != 2 || !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(malformed());
            }
            *byte = u8::from_str_radix(pair, 16).map_err(|_| malformed())?;
        }
        if pairs.next().is_some() {
            return Err(malformed());
        }
        Self(bytes).check()
    }
}

/// What is wrong with a MAC address given for an interface: each prints
/// as one sentence saying what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MacError {
    /// Not six two-digit hex numbers separated by `:`.
    Malformed { text: String },
    /// A group address: no interface can have one.
    Multicast { mac: Mac },
    /// 00:00:00:00:00:00.
    Zero,
}

impl fmt::Display for MacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { text } => write!(
                f,
                "'{text}' is not a MAC address; write six two-digit hex numbers separated by ':', e.g. 00:16:3e:00:01:00"
            ),
            Self::Multicast { mac } => {
                let mut unicast = *mac;
                unicast.0[0] &= !1;
                write!(
                    f,
                    "{mac} is a multicast address (the lowest bit of its first byte is set), which no interface can have; use a unicast one such as {unicast}"
                )
            }
            Self::Zero => write!(
                f,
                "00:00:00:00:00:00 is not an interface's address; use a real one, e.g. 00:16:3e:00:01:00"
            ),
        }
    }
}

impl std::error::Error for MacError {}

/// A DomU's network interface as `--domu` gives it: `vif` (the MAC is
/// then [`Mac::xen_default`] for its domain and handle) or `vif=MAC`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vif {
    pub mac: Option<Mac>,
}

impl Vif {
    /// An interface with the default MAC.
    pub fn new() -> Self {
        Self::default()
    }

    /// An interface with `mac`.
    pub fn with_mac(mac: Mac) -> Self {
        Self { mac: Some(mac) }
    }
}

/// One interface of the system, its MAC settled: interface `handle` of
/// domain `domid` (Xen's `vifDOMID.HANDLE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interface {
    pub domid: usize,
    pub handle: usize,
    pub mac: Mac,
    /// The MAC was given (`vif=MAC`) rather than the default.
    pub given: bool,
}

impl Interface {
    /// Interface `handle` of domain `domid` as `vif` gives it; an error
    /// when it needs a default MAC and there is none ([`Mac::xen_default`]).
    pub fn resolve(domid: usize, handle: usize, vif: Vif) -> Result<Self> {
        let mac = match vif.mac {
            Some(mac) => mac,
            None => Mac::xen_default(domid, handle).ok_or(Error::NoDefaultMac { domid, handle })?,
        };
        Ok(Self {
            domid,
            handle,
            mac,
            given: vif.mac.is_some(),
        })
    }

    /// The word that tells Dom0 about it:
    /// `pavise.vif=DOMID:HANDLE:MAC`, e.g. `pavise.vif=1:0:00-16-3e-00-01-00`.
    pub fn dom0_word(&self) -> String {
        format!(
            "{VIF_WORD}{}:{}:{}",
            self.domid,
            self.handle,
            self.mac.dashed()
        )
    }

    /// Its name in messages, e.g. `vif1.0 (d1's interface 0, default MAC)`.
    pub fn describe(&self) -> String {
        let default = if self.given { "" } else { ", default MAC" };
        let (d, h) = (self.domid, self.handle);
        format!("vif{d}.{h} (d{d}'s interface {h}{default})")
    }
}

/// Checks that no two of `interfaces`, and none of them and the uplink NIC
/// when there is one, have the same MAC address.
pub fn check_unique(interfaces: &[Interface], uplink: bool) -> Result<()> {
    let uplink_name = "the uplink NIC (--net)";
    for (j, later) in interfaces.iter().enumerate() {
        if uplink && later.mac == UPLINK_MAC {
            return Err(Error::DuplicateMac {
                mac: later.mac,
                first: uplink_name.to_owned(),
                second: later.describe(),
            });
        }
        if let Some(earlier) = interfaces[..j].iter().find(|e| e.mac == later.mac) {
            return Err(Error::DuplicateMac {
                mac: later.mac,
                first: earlier.describe(),
                second: later.describe(),
            });
        }
    }
    Ok(())
}

/// One TCP port forward from the host into the uplink network: QEMU
/// listens on 127.0.0.1:`host_port` (the loopback only, so that nothing
/// outside the host reaches the guests) and connects each connection to
/// `guest_ip`:`guest_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFwd {
    pub host_port: u16,
    pub guest_ip: Ipv4Addr,
    pub guest_port: u16,
}

impl HostFwd {
    pub fn new(host_port: u16, guest_ip: Ipv4Addr, guest_port: u16) -> Self {
        Self {
            host_port,
            guest_ip,
            guest_port,
        }
    }

    /// Reads `HOSTPORT:GUESTIP:GUESTPORT` (what `--hostfwd` takes) and
    /// checks it ([`HostFwd::check`]).
    pub fn parse(arg: &str) -> Result<Self> {
        let bad = |reason: String| Error::BadHostFwd {
            arg: arg.to_owned(),
            reason,
        };
        let fields: Vec<&str> = arg.split(':').collect();
        let [host_port, guest_ip, guest_port] = fields[..] else {
            return Err(bad("it is not three fields separated by ':'".to_owned()));
        };
        let port = |text: &str, which: &str| -> Result<u16> {
            text.parse::<u16>()
                .ok()
                .filter(|p| *p != 0 && text.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    bad(format!(
                        "the {which} port '{text}' is not a number from 1 to 65535"
                    ))
                })
        };
        let host_port = port(host_port, "host")?;
        let guest_ip: Ipv4Addr = guest_ip
            .parse()
            .map_err(|_| bad(format!("'{guest_ip}' is not an IPv4 address")))?;
        let guest_port = port(guest_port, "guest")?;
        let forward = Self::new(host_port, guest_ip, guest_port);
        forward.check()?;
        Ok(forward)
    }

    /// Checks what QEMU would refuse or what cannot reach a DomU: ports
    /// from 1, and a guest address on the uplink network that is not its
    /// network or broadcast address, the host's ([`UPLINK_HOST`]) or the
    /// DNS relay's ([`UPLINK_DNS`]).
    pub fn check(&self) -> Result<()> {
        let bad = |reason: String| Error::BadHostFwd {
            arg: self.to_string(),
            reason,
        };
        if self.host_port == 0 || self.guest_port == 0 {
            return Err(bad("a port must be a number from 1 to 65535".to_owned()));
        }
        let ip = self.guest_ip;
        let mask = u32::MAX << (32 - UPLINK_PREFIX);
        let network = u32::from(UPLINK_NETWORK);
        let broadcast = Ipv4Addr::from(network | !mask);
        if u32::from(ip) & mask != network {
            return Err(bad(format!(
                "{ip} is not on the uplink network {UPLINK_NETWORK}/{UPLINK_PREFIX}"
            )));
        }
        let taken = if ip == UPLINK_NETWORK {
            Some("the uplink network's own address")
        } else if ip == broadcast {
            Some("the uplink network's broadcast address")
        } else if ip == UPLINK_HOST {
            Some("the host's own address on the uplink network (its gateway)")
        } else if ip == UPLINK_DNS {
            Some("QEMU's DNS relay on the uplink network")
        } else {
            None
        };
        match taken {
            Some(what) => Err(bad(format!("{ip} is {what}, not a DomU's"))),
            None => Ok(()),
        }
    }

    /// QEMU's `hostfwd=` option for it:
    /// `hostfwd=tcp:127.0.0.1:HOSTPORT-GUESTIP:GUESTPORT`.
    pub fn qemu_option(&self) -> String {
        format!(
            "hostfwd=tcp:127.0.0.1:{}-{}:{}",
            self.host_port, self.guest_ip, self.guest_port
        )
    }
}

impl fmt::Display for HostFwd {
    /// As `--hostfwd` takes it: `8080:10.0.2.15:80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.host_port, self.guest_ip, self.guest_port
        )
    }
}

/// The machine's uplink: a QEMU user-mode network (10.0.2.0/24; the host
/// is 10.0.2.2, the DNS relay 10.0.2.3, DHCP hands out addresses from
/// 10.0.2.15) reached through a virtio-net NIC in PCI slot
/// [`UPLINK_SLOT`], with the port forwards from the host it carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uplink {
    pub hostfwd: Vec<HostFwd>,
}

impl Uplink {
    /// Checks each forward ([`HostFwd::check`]) and that no host port is
    /// forwarded twice.
    pub fn check(&self) -> Result<()> {
        for (j, forward) in self.hostfwd.iter().enumerate() {
            forward.check()?;
            if let Some(earlier) = self.hostfwd[..j]
                .iter()
                .find(|e| e.host_port == forward.host_port)
            {
                return Err(Error::HostPortTwice {
                    port: forward.host_port,
                    first: *earlier,
                    second: *forward,
                });
            }
        }
        Ok(())
    }

    /// QEMU's `-netdev` value:
    /// `user,id=uplink,net=10.0.2.0/24,restrict=off[,hostfwd=…]…`.
    pub fn netdev(&self) -> String {
        let mut netdev =
            format!("user,id={UPLINK_NETDEV_ID},net={UPLINK_NETWORK}/{UPLINK_PREFIX},restrict=off");
        for forward in &self.hostfwd {
            netdev.push(',');
            netdev.push_str(&forward.qemu_option());
        }
        netdev
    }

    /// QEMU's `-device` value for the NIC:
    /// `virtio-net-pci,netdev=uplink,addr=0x8,mac=52:54:00:12:34:56,romfile=`
    /// (no option ROM: nothing boots from it), and with `iommu`
    /// `,disable-legacy=on,iommu_platform=on` (as for the disks: the device
    /// then goes through the IOMMU, VIRTIO_F_ACCESS_PLATFORM, which QEMU
    /// offers on modern-only devices).
    pub fn device(&self, iommu: bool) -> String {
        let platform = if iommu {
            ",disable-legacy=on,iommu_platform=on"
        } else {
            ""
        };
        format!(
            "virtio-net-pci,netdev={UPLINK_NETDEV_ID},addr={UPLINK_SLOT:#x},mac={UPLINK_MAC},romfile={platform}"
        )
    }

    /// QEMU's arguments: `-netdev` [`Uplink::netdev`] `-device`
    /// [`Uplink::device`].
    pub fn qemu_args(&self, iommu: bool) -> Vec<OsString> {
        vec![
            "-netdev".into(),
            self.netdev().into(),
            "-device".into(),
            self.device(iommu).into(),
        ]
    }

    /// The word that tells Dom0 where the NIC is: `pavise.uplink=8`.
    pub fn dom0_word(&self) -> String {
        format!("{UPLINK_WORD}{UPLINK_SLOT:x}")
    }

    /// A short description: `uplink 10.0.2.0/24`, with the forwards, e.g.
    /// `uplink 10.0.2.0/24, 127.0.0.1:8080 → 10.0.2.16:80`.
    pub fn describe(&self) -> String {
        let mut s = format!("uplink {UPLINK_NETWORK}/{UPLINK_PREFIX}");
        for forward in &self.hostfwd {
            s.push_str(&format!(
                ", 127.0.0.1:{} → {}:{}",
                forward.host_port, forward.guest_ip, forward.guest_port
            ));
        }
        s
    }

    /// How to reach the system from the host and the host from it, one
    /// line each, for `cargo xtask run` to print.
    pub fn reach(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "uplink network {UPLINK_NETWORK}/{UPLINK_PREFIX} (QEMU user networking): \
             the host is {UPLINK_HOST} (the gateway), DNS {UPLINK_DNS}, DHCP from {UPLINK_DHCP_START}"
        )];
        if self.hostfwd.is_empty() {
            lines.push(
                "nothing is forwarded from the host; --hostfwd HOSTPORT:GUESTIP:GUESTPORT forwards a TCP port"
                    .to_owned(),
            );
        }
        for forward in &self.hostfwd {
            lines.push(format!(
                "from the host, TCP 127.0.0.1:{} reaches {}:{} (e.g. `nc 127.0.0.1 {}`)",
                forward.host_port, forward.guest_ip, forward.guest_port, forward.host_port
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(text: &str) -> Mac {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn macs_are_read_and_written() {
        assert_eq!(
            mac("00:16:3e:aa:bb:cc"),
            Mac([0x00, 0x16, 0x3e, 0xaa, 0xbb, 0xcc])
        );
        // Either case; written in lower case.
        let m = mac("02:AB:cd:Ef:00:01");
        assert_eq!(m.to_string(), "02:ab:cd:ef:00:01");
        assert_eq!(m.dashed(), "02-ab-cd-ef-00-01");
        assert_eq!(UPLINK_MAC.to_string(), "52:54:00:12:34:56");
        // Any unicast address is an interface's, locally administered too.
        for ok in [
            "00:00:00:00:00:01",
            "fe:ff:ff:ff:ff:ff",
            "52:54:00:12:34:56",
        ] {
            assert_eq!(mac(ok).to_string(), ok);
        }
    }

    #[test]
    fn default_macs_follow_xen() {
        assert_eq!(
            Mac::xen_default(1, 0).unwrap().to_string(),
            "00:16:3e:00:01:00"
        );
        assert_eq!(
            Mac::xen_default(0x2a, 3).unwrap().dashed(),
            "00-16-3e-00-2a-03"
        );
        assert_eq!(
            Mac::xen_default(255, 255).unwrap().to_string(),
            "00:16:3e:00:ff:ff"
        );
        assert_eq!(Mac::xen_default(256, 0), None);
        assert_eq!(Mac::xen_default(1, 256), None);
        assert!(Mac::xen_default(7, 1).unwrap().check().is_ok());
    }

    #[test]
    fn bad_macs_are_one_sentence_each() {
        for (text, message) in [
            (
                "00:16:3e:00:01",
                "'00:16:3e:00:01' is not a MAC address; write six two-digit hex numbers separated by ':', e.g. 00:16:3e:00:01:00",
            ),
            (
                "00:16:3e:00:01:00:02",
                "'00:16:3e:00:01:00:02' is not a MAC address",
            ),
            ("00-16-3e-00-01-00", "is not a MAC address"),
            ("0:16:3e:0:1:0", "is not a MAC address"),
            ("00:16:3e:00:01:0g", "is not a MAC address"),
            ("00:16:3e:00:01:+1", "is not a MAC address"),
            ("00:16:3e:00:01:", "is not a MAC address"),
            ("", "'' is not a MAC address"),
            ("001122334455", "is not a MAC address"),
            (
                "01:00:5e:00:00:01",
                "01:00:5e:00:00:01 is a multicast address (the lowest bit of its first byte is set), \
                 which no interface can have; use a unicast one such as 00:00:5e:00:00:01",
            ),
            (
                "ff:ff:ff:ff:ff:ff",
                "use a unicast one such as fe:ff:ff:ff:ff:ff",
            ),
            ("33:33:00:00:00:01", "is a multicast address"),
            (
                "00:00:00:00:00:00",
                "00:00:00:00:00:00 is not an interface's address; use a real one, e.g. 00:16:3e:00:01:00",
            ),
        ] {
            let e = text.parse::<Mac>().unwrap_err().to_string();
            assert!(e.contains(message), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{text:?}: {e}");
        }
    }

    fn interface(domid: usize, handle: usize, mac: Option<&str>) -> Interface {
        let vif = Vif {
            mac: mac.map(|m| m.parse().unwrap()),
        };
        Interface::resolve(domid, handle, vif).unwrap()
    }

    #[test]
    fn interfaces_and_their_dom0_words() {
        let i = interface(1, 0, None);
        assert_eq!(i.mac.to_string(), "00:16:3e:00:01:00");
        assert!(!i.given);
        assert_eq!(i.dom0_word(), "pavise.vif=1:0:00-16-3e-00-01-00");
        assert_eq!(i.describe(), "vif1.0 (d1's interface 0, default MAC)");
        let i = interface(2, 1, Some("00:16:3E:AA:BB:CC"));
        assert_eq!(i.dom0_word(), "pavise.vif=2:1:00-16-3e-aa-bb-cc");
        assert_eq!(i.describe(), "vif2.1 (d2's interface 1)");
        let e = Interface::resolve(300, 0, Vif::new()).unwrap_err();
        assert!(matches!(
            e,
            Error::NoDefaultMac {
                domid: 300,
                handle: 0
            }
        ));
        assert_eq!(
            e.to_string(),
            "vif300.0 has no default MAC (00:16:3e:00:DOMID:HANDLE fits domain ids and handles up to 255); give it one with vif=MAC"
        );
        assert!(Interface::resolve(300, 0, Vif::with_mac(mac("00:16:3e:01:2c:00"))).is_ok());
    }

    #[test]
    fn a_mac_is_used_once_in_the_system() {
        let ok = [
            interface(1, 0, None),
            interface(1, 1, None),
            interface(2, 0, Some("00:16:3e:aa:bb:cc")),
        ];
        assert!(check_unique(&ok, true).is_ok());
        assert!(check_unique(&[], true).is_ok());
        // A given MAC may clash with another interface's default.
        let clash = [
            interface(1, 0, None),
            interface(2, 0, Some("00:16:3e:00:01:00")),
        ];
        let e = check_unique(&clash, false).unwrap_err().to_string();
        assert_eq!(
            e,
            "two interfaces have the MAC 00:16:3e:00:01:00: vif1.0 (d1's interface 0, default MAC) \
             and vif2.0 (d2's interface 0); give each interface a MAC of its own with vif=MAC \
             (or write vif alone for the default, 00:16:3e:00:DOMID:HANDLE)"
        );
        // The uplink NIC is an interface too, when there is one.
        let uplinks = [interface(1, 0, Some("52:54:00:12:34:56"))];
        assert!(check_unique(&uplinks, false).is_ok());
        let e = check_unique(&uplinks, true).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "two interfaces have the MAC 52:54:00:12:34:56: the uplink NIC (--net) and vif1.0"
            ),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn host_forwards_are_read_and_checked() {
        let f = HostFwd::parse("8080:10.0.2.16:80").unwrap();
        assert_eq!(f, HostFwd::new(8080, Ipv4Addr::new(10, 0, 2, 16), 80));
        assert_eq!(f.to_string(), "8080:10.0.2.16:80");
        assert_eq!(f.qemu_option(), "hostfwd=tcp:127.0.0.1:8080-10.0.2.16:80");
        assert!(HostFwd::parse("65535:10.0.2.1:1").is_ok());
        assert!(HostFwd::parse("1:10.0.2.254:65535").is_ok());
        for (arg, reason) in [
            ("8080", "it is not three fields separated by ':'"),
            ("8080:10.0.2.15", "it is not three fields"),
            ("8080:10.0.2.15:80:1", "it is not three fields"),
            ("tcp:8080:10.0.2.15:80", "it is not three fields"),
            (
                "0:10.0.2.15:80",
                "the host port '0' is not a number from 1 to 65535",
            ),
            ("65536:10.0.2.15:80", "the host port '65536' is not"),
            ("+80:10.0.2.15:80", "the host port '+80' is not"),
            ("http:10.0.2.15:80", "the host port 'http' is not"),
            ("8080:10.0.2.15:", "the guest port '' is not"),
            ("8080:10.0.2.15:0", "the guest port '0' is not"),
            ("8080:guest:80", "'guest' is not an IPv4 address"),
            ("8080:10.0.2:80", "'10.0.2' is not an IPv4 address"),
            (
                "8080:10.0.3.15:80",
                "10.0.3.15 is not on the uplink network 10.0.2.0/24",
            ),
            (
                "8080:192.168.1.2:80",
                "192.168.1.2 is not on the uplink network",
            ),
            (
                "8080:10.0.2.2:80",
                "10.0.2.2 is the host's own address on the uplink network (its gateway), not a DomU's",
            ),
            (
                "8080:10.0.2.3:53",
                "10.0.2.3 is QEMU's DNS relay on the uplink network",
            ),
            ("8080:10.0.2.0:80", "the uplink network's own address"),
            (
                "8080:10.0.2.255:80",
                "the uplink network's broadcast address",
            ),
        ] {
            let e = HostFwd::parse(arg).unwrap_err();
            assert!(matches!(e, Error::BadHostFwd { .. }), "{arg}: {e:?}");
            let message = e.to_string();
            assert!(
                message.starts_with(&format!("bad --hostfwd '{arg}': ")),
                "{arg}: {message}"
            );
            assert!(message.contains(reason), "{arg}: {message}");
            assert!(
                message.ends_with(
                    "; write HOSTPORT:GUESTIP:GUESTPORT with a DomU's address on 10.0.2.0/24, e.g. 8080:10.0.2.15:80"
                ),
                "{message}"
            );
            assert!(!message.contains('\n'));
        }
    }

    #[test]
    fn the_uplinks_qemu_arguments() {
        let uplink = Uplink {
            hostfwd: vec![
                HostFwd::new(8080, Ipv4Addr::new(10, 0, 2, 16), 80),
                HostFwd::new(2222, Ipv4Addr::new(10, 0, 2, 15), 22),
            ],
        };
        assert!(uplink.check().is_ok());
        let args: Vec<String> = uplink
            .qemu_args(false)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-netdev",
                "user,id=uplink,net=10.0.2.0/24,restrict=off,\
                 hostfwd=tcp:127.0.0.1:8080-10.0.2.16:80,hostfwd=tcp:127.0.0.1:2222-10.0.2.15:22",
                "-device",
                "virtio-net-pci,netdev=uplink,addr=0x8,mac=52:54:00:12:34:56,romfile=",
            ]
        );
        assert_eq!(
            uplink.device(true),
            "virtio-net-pci,netdev=uplink,addr=0x8,mac=52:54:00:12:34:56,romfile=,\
             disable-legacy=on,iommu_platform=on"
        );
        assert_eq!(
            Uplink::default().netdev(),
            "user,id=uplink,net=10.0.2.0/24,restrict=off"
        );
        assert_eq!(uplink.dom0_word(), "pavise.uplink=8");
        assert_eq!(
            uplink.describe(),
            "uplink 10.0.2.0/24, 127.0.0.1:8080 → 10.0.2.16:80, 127.0.0.1:2222 → 10.0.2.15:22"
        );
        let reach = uplink.reach();
        assert_eq!(reach.len(), 3);
        assert!(reach[0].contains("the host is 10.0.2.2 (the gateway), DNS 10.0.2.3"));
        assert_eq!(
            reach[1],
            "from the host, TCP 127.0.0.1:8080 reaches 10.0.2.16:80 (e.g. `nc 127.0.0.1 8080`)"
        );
        assert!(Uplink::default().reach()[1].contains("--hostfwd"));
    }

    #[test]
    fn an_uplink_forwards_each_host_port_once() {
        let twice = Uplink {
            hostfwd: vec![
                HostFwd::new(8080, Ipv4Addr::new(10, 0, 2, 15), 80),
                HostFwd::new(8080, Ipv4Addr::new(10, 0, 2, 16), 80),
            ],
        };
        assert_eq!(
            twice.check().unwrap_err().to_string(),
            "host port 8080 is forwarded twice (8080:10.0.2.15:80 and 8080:10.0.2.16:80); \
             give each --hostfwd a host port of its own"
        );
        // A forward made in code is checked as --hostfwd's are.
        let bad = Uplink {
            hostfwd: vec![HostFwd::new(8080, Ipv4Addr::new(10, 0, 2, 2), 80)],
        };
        assert!(matches!(bad.check(), Err(Error::BadHostFwd { .. })));
        let zero = Uplink {
            hostfwd: vec![HostFwd::new(0, Ipv4Addr::new(10, 0, 2, 15), 80)],
        };
        let e = zero.check().unwrap_err().to_string();
        assert!(e.contains("a port must be a number from 1 to 65535"), "{e}");
    }
}
