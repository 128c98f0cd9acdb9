//! Linux on the network: the initramfs whose /init loads Debian's
//! `xen-netfront`, brings up `eth0` and plays one role (receive, send,
//! fetch over the uplink and serve) — used by the Linux network scenarios
//! and by `cargo xtask bench`.

use std::path::{Path, PathBuf};

use crate::Result;
use crate::linux::{self, LinuxKit};
use crate::linux_root;

/// The initramfs's /init: loads xen-netfront (and what it needs), brings
/// up `eth0` with `net.ip=` (and a default route via `net.gw=`), then
/// plays `net.role=`:
/// - `recv`: takes one TCP connection on port 5001, prints the byte count
///   and md5 of what came;
/// - `send`: pings `net.peer=` 3 times, sends `net.bytes=` random bytes
///   to its port 5001 (retrying until it listens), prints their md5;
/// - `uplink`: fetches `net.url=` with wget and prints its md5, then
///   serves `/page` once on port 8080 (`nc -l`) for the host.
///
/// Every step prints a `linux-net:` line; a failure prints
/// `linux-net: FAIL …` and powers off.
pub const NET_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {
    echo "linux-net: FAIL $*"
    poweroff -f
}
arg() {
    for w in $(cat /proc/cmdline); do
        case "$w" in "$1="*) echo "${w#*=}" ;; esac
    done
}
@LOAD_MODULES@
echo "linux-net: loaded$loaded"
i=0
while ! ip link show eth0 >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -gt 300 ] && fail "no eth0 after 30 s"
    sleep 0.1
done
ip link set lo up
ip link set eth0 up || fail "ip link set eth0 up"
ip addr add "$(arg net.ip)" dev eth0 || fail "ip addr add"
gw=$(arg net.gw)
[ -n "$gw" ] && { ip route add default via "$gw" || fail "ip route add"; }
echo "linux-net: eth0 $(cat /sys/class/net/eth0/address) $(arg net.ip) up"
case "$(arg net.role)" in
recv)
    nc -l -p 5001 > /tmp/got || fail "nc -l"
    echo "linux-net: received $(wc -c < /tmp/got) bytes md5 $(md5sum < /tmp/got | cut -d' ' -f1)"
    ;;
send)
    peer=$(arg net.peer)
    ping -c 3 -W 5 "$peer" > /tmp/ping || { cat /tmp/ping; fail "ping $peer"; }
    echo "linux-net: $(grep 'packets transmitted' /tmp/ping)"
    echo "linux-net: $(grep 'min/avg/max' /tmp/ping)"
    head -c "$(arg net.bytes)" /dev/urandom > /tmp/data
    echo "linux-net: sending $(wc -c < /tmp/data) bytes md5 $(md5sum < /tmp/data | cut -d' ' -f1)"
    i=0
    start=$(cut -d' ' -f1 /proc/uptime)
    until nc "$peer" 5001 < /tmp/data; do
        i=$((i + 1))
        [ $i -gt 100 ] && fail "nc $peer 5001"
        sleep 0.2
    done
    end=$(cut -d' ' -f1 /proc/uptime)
    echo "linux-net: sent in $(awk "BEGIN { print $end - $start }") s"
    ;;
uplink)
    wget -q -O /tmp/fetched "$(arg net.url)" || fail "wget $(arg net.url)"
    echo "linux-net: fetched $(wc -c < /tmp/fetched) bytes md5 $(md5sum < /tmp/fetched | cut -d' ' -f1)"
    printf 'served by linux %s\n' "$(arg net.ip)" > /tmp/page
    echo "linux-net: serving on 8080"
    nc -l -p 8080 < /tmp/page || fail "nc -l -p 8080"
    echo "linux-net: served"
    ;;
*) fail "no net.role" ;;
esac
echo "linux-net: done"
poweroff -f
"#;

/// `/init` of `cargo xtask linux --net`: loads the network modules,
/// asks QEMU's DHCP server for eth0's address (udhcpc; the uplink's
/// network is 10.0.2.0/24, the host 10.0.2.2), then the interactive
/// shell of [`linux::INTERACTIVE_INIT`]. `@LOAD_MODULES@` stands for
/// [`linux_root::LOAD_MODULES`]. Without an answer it says so and
/// still gives the shell.
pub const INTERACTIVE_NET_INIT: &str = concat!(
    r#"#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {
    echo "Pavise: $*"
}
@LOAD_MODULES@
cat > /bin/udhcpc-script <<'SCRIPT'
#!/bin/sh
case "$1" in
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route add default via "${router%% *}"
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "Pavise: $interface has $ip/$mask, gateway ${router%% *}" > /dev/console
    ;;
esac
SCRIPT
chmod +x /bin/udhcpc-script
i=0
while ! ip link show eth0 >/dev/null 2>&1 && [ $i -lt 100 ]; do
    i=$((i + 1))
    sleep 0.1
done
ip link set lo up
if ip link set eth0 up 2>/dev/null; then
    udhcpc -i eth0 -s /bin/udhcpc-script -q -n -t 5 >/dev/null 2>&1 ||
        echo "Pavise: no DHCP answer on eth0; configure it with ip addr add ADDR/24 dev eth0"
else
    echo "Pavise: no eth0 (xen-netfront did not find its vif)"
fi
"#,
    crate::linux::interactive_shell!()
);

/// The `/init` of `cargo xtask linux --net`, ready.
pub fn interactive_init() -> String {
    INTERACTIVE_NET_INIT.replace("@LOAD_MODULES@", linux_root::LOAD_MODULES)
}

/// Makes the network initramfs (xen-netfront taken out of the kit's
/// kernel package, or found in the cache) at `out`.
pub fn initramfs(kit: &LinuxKit, out: &Path) -> Result<()> {
    let (modules, _) = linux_root::modules_named(
        &linux::cache_dir(),
        &kit.version,
        linux_root::NET_MODULES,
        linux_root::NET_MODULES_DIR,
    )?;
    let files = linux_root::module_files(&modules)?;
    let script = NET_INIT.replace("@LOAD_MODULES@", linux_root::LOAD_MODULES);
    linux::initramfs_with(&kit.busybox, &script, &files, out)
}

/// Where [`initramfs`] is kept in the cache.
pub fn initramfs_path() -> PathBuf {
    linux::cache_dir().join("initramfs-net.cpio.gz")
}
