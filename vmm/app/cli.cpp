#include "vmm/app/cli.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <set>
#include <utility>

#include "devices/pci_host_bridge.h"
#include "vmm/app/console_watcher.h"
#include "vmm/app/virtio_registry.h"
#include "vmm/core/exit_codes.h"

namespace minikvm {

namespace {
// "90s" -> {90, "s"}: up to 9 digits, then the rest as the unit.
std::optional<std::pair<uint64_t, std::string>> number_and_unit(const std::string& text) {
    size_t digits = 0;
    while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
    if (digits == 0 || digits > 9) return std::nullopt;
    return std::pair{std::stoull(text.substr(0, digits)), text.substr(digits)};
}
}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(const std::string& text) {
    const auto parsed = number_and_unit(text);
    if (!parsed) return std::nullopt;
    const auto& [number, unit] = *parsed;
    uint64_t ms = 0;
    if (unit.empty() || unit == "s") ms = number * 1000;
    else if (unit == "ms") ms = number;
    else if (unit == "m") ms = number * 60'000;
    else if (unit == "h") ms = number * 3'600'000;
    else return std::nullopt;
    if (ms > 1'000'000'000ULL) return std::nullopt;
    return std::chrono::milliseconds(ms);
}

std::optional<std::chrono::nanoseconds> parse_poll_window(const std::string& text) {
    const auto parsed = number_and_unit(text);
    if (!parsed) return std::nullopt;
    const auto& [number, unit] = *parsed;
    uint64_t ns = 0;
    if (unit == "ns") ns = number;
    else if (unit == "us") ns = number * 1000;
    else if (unit == "ms") ns = number * 1'000'000;
    else if (unit.empty() && number == 0) ns = 0;
    else return std::nullopt;
    if (ns > 10'000'000) return std::nullopt;
    return std::chrono::nanoseconds(ns);
}

std::optional<uint64_t> parse_memory_size(const std::string& text) {
    size_t i = 0;
    uint64_t value = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
        unsigned digit = static_cast<unsigned>(text[i] - '0');
        if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
        ++i;
    }
    if (i == 0 || value == 0) return std::nullopt;
    std::string suffix;
    for (; i < text.size(); ++i) suffix += static_cast<char>(std::toupper(static_cast<unsigned char>(text[i])));
    unsigned shift = 0;
    if (suffix.empty() || suffix == "M" || suffix == "MB" || suffix == "MIB") shift = 20;
    else if (suffix == "K" || suffix == "KB" || suffix == "KIB") shift = 10;
    else if (suffix == "G" || suffix == "GB" || suffix == "GIB") shift = 30;
    else if (suffix == "T" || suffix == "TB" || suffix == "TIB") shift = 40;
    else return std::nullopt;
    if (value > (std::numeric_limits<uint64_t>::max() >> shift)) return std::nullopt;
    return value << shift;
}

namespace {

// Splits "a=1,b=x,,y" into {"a=1", "b=x,y"}: ",," is a literal comma.
std::vector<std::string> split_items(const std::string& text) {
    std::vector<std::string> items(1);
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] != ',') {
            items.back() += text[i];
        } else if (i + 1 < text.size() && text[i + 1] == ',') {
            items.back() += ',';
            ++i;
        } else {
            items.emplace_back();
        }
    }
    return items;
}

}  // namespace

std::optional<DiskConfig> parse_disk_option(const std::string& text, std::string& error) {
    DiskConfig disk;
    std::set<std::string> seen;
    bool have_path = false;
    for (const std::string& item : split_items(text)) {
        const size_t equals = item.find('=');
        const std::string key = item.substr(0, equals);
        const bool has_value = equals != std::string::npos;
        const std::string value = has_value ? item.substr(equals + 1) : std::string();
        if (key.empty()) {
            error = item.empty() ? "empty item (stray comma?)" : fmt::format("'{}' has no key", item);
            return std::nullopt;
        }
        if (!seen.insert(key).second) {
            error = fmt::format("'{}' given twice", key);
            return std::nullopt;
        }
        if (key == "ro") {
            if (has_value) {
                error = "'ro' takes no value";
                return std::nullopt;
            }
            disk.read_only = true;
            continue;
        }
        if (!has_value) {
            error = fmt::format("'{}' is not KEY=VALUE (keys: path, ro, cache, aio, serial)", item);
            return std::nullopt;
        }
        if (key == "path") {
            if (value.empty()) {
                error = "path= is empty";
                return std::nullopt;
            }
            disk.path = value;
            have_path = true;
        } else if (key == "cache") {
            if (value == "none") disk.cache = DiskCache::None;
            else if (value == "writeback") disk.cache = DiskCache::Writeback;
            else {
                error = fmt::format("cache={}: use cache=none or cache=writeback", value);
                return std::nullopt;
            }
        } else if (key == "aio") {
            if (value == "io_uring") disk.aio = DiskAio::IoUring;
            else if (value == "threads") disk.aio = DiskAio::Threads;
            else {
                error = fmt::format("aio={}: use aio=io_uring or aio=threads", value);
                return std::nullopt;
            }
        } else if (key == "serial") {
            // VIRTIO_BLK_T_GET_ID returns at most 20 bytes of ASCII (virtio 1.2 5.2.6).
            if (value.size() > 20) {
                error = fmt::format("serial={}: at most 20 characters, not {}", value, value.size());
                return std::nullopt;
            }
            for (char c : value)
                if (c < 0x20 || c > 0x7e) {
                    error = "serial= must be printable ASCII";
                    return std::nullopt;
                }
            disk.serial = value;
        } else {
            error = fmt::format("unknown key '{}' (keys: path, ro, cache, aio, serial)", key);
            return std::nullopt;
        }
    }
    if (!have_path) {
        error = "path=FILE is required";
        return std::nullopt;
    }
    return disk;
}

namespace {

std::optional<HostForward> parse_host_forward(const std::string& text, std::string& error) {
    // [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT
    const std::string form = "use [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT, e.g. tcp::8080-:80";
    HostForward forward;
    forward.text = text;
    const size_t dash = text.find('-');
    const size_t first_colon = text.find(':');
    if (dash == std::string::npos || first_colon == std::string::npos || first_colon > dash) {
        error = fmt::format("hostfwd={}: {}", text, form);
        return std::nullopt;
    }
    const std::string protocol = text.substr(0, first_colon);
    if (protocol == "udp") {
        forward.udp = true;
    } else if (!protocol.empty() && protocol != "tcp") {
        error = fmt::format("hostfwd={}: protocol '{}' is neither tcp nor udp", text, protocol);
        return std::nullopt;
    }
    const std::string host = text.substr(first_colon + 1, dash - first_colon - 1);
    const std::string guest = text.substr(dash + 1);
    const auto split_address_port = [&](const std::string& part, const char* side, in_addr& address, uint16_t& port,
                                        const char* default_address) -> bool {
        const size_t colon = part.rfind(':');
        if (colon == std::string::npos) {
            error = fmt::format("hostfwd={}: {}", text, form);
            return false;
        }
        const std::string address_text = colon == 0 ? default_address : part.substr(0, colon);
        if (inet_pton(AF_INET, address_text.c_str(), &address) != 1) {
            error = fmt::format("hostfwd={}: {} address '{}' is not an IPv4 address", text, side, address_text);
            return false;
        }
        const std::string port_text = part.substr(colon + 1);
        const bool digits = !port_text.empty() && port_text.size() <= 5 &&
                            std::all_of(port_text.begin(), port_text.end(),
                                        [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; });
        const unsigned long number = digits ? std::stoul(port_text) : 0;
        if (number == 0 || number > 65535) {
            error = fmt::format("hostfwd={}: {} port '{}' is not a port number (1 to 65535)", text, side, port_text);
            return false;
        }
        port = static_cast<uint16_t>(number);
        return true;
    };
    // Listening on loopback unless told otherwise: a forward is a way into
    // the guest, not something to offer the whole network by default.
    if (!split_address_port(host, "host", forward.host_address, forward.host_port, "127.0.0.1") ||
        !split_address_port(guest, "guest", forward.guest_address, forward.guest_port, "0.0.0.0"))
        return std::nullopt;
    return forward;
}

}  // namespace

std::optional<NetConfig> parse_net_option(const std::string& text, std::string& error) {
    NetConfig net;
    std::set<std::string> seen;
    std::vector<std::string> items = split_items(text);
    if (!items.empty() && items[0] == "user") {
        net.backend = NetConfig::Backend::User;
        items.erase(items.begin());
    }
    const bool user = net.backend == NetConfig::Backend::User;
    const char* keys = user ? "hostfwd, mac" : "tap, mac";
    for (const std::string& item : items) {
        const size_t equals = item.find('=');
        const std::string key = item.substr(0, equals);
        if (key.empty()) {
            error = item.empty() ? "empty item (stray comma?)" : fmt::format("'{}' has no key", item);
            return std::nullopt;
        }
        if (equals == std::string::npos) {
            error = item == "user" ? "'user' comes first: --net user[,hostfwd=RULE]...[,mac=MAC]"
                                   : fmt::format("'{}' is not KEY=VALUE (keys: {})", item, keys);
            return std::nullopt;
        }
        if (!seen.insert(key).second && key != "hostfwd") {
            error = fmt::format("'{}' given twice", key);
            return std::nullopt;
        }
        const std::string value = item.substr(equals + 1);
        if (user && key == "hostfwd") {
            std::optional<HostForward> forward = parse_host_forward(value, error);
            if (!forward) return std::nullopt;
            for (const HostForward& earlier : net.forwards)
                if (earlier.udp == forward->udp && earlier.host_port == forward->host_port &&
                    earlier.host_address.s_addr == forward->host_address.s_addr) {
                    error = fmt::format("hostfwd={}: the host port is forwarded twice", value);
                    return std::nullopt;
                }
            net.forwards.push_back(std::move(*forward));
        } else if (!user && key == "tap") {
            // What the kernel takes as an interface name (dev_valid_name).
            constexpr size_t kMaxName = 15;
            if (value.empty() || value.size() > kMaxName || value == "." || value == "..") {
                error = fmt::format("tap={}: an interface name is 1 to {} characters", value, kMaxName);
                return std::nullopt;
            }
            for (char c : value)
                if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)) || c < 0x21 || c > 0x7e) {
                    error = fmt::format("tap={}: not a valid interface name", value);
                    return std::nullopt;
                }
            net.tap = value;
        } else if (key == "mac") {
            std::optional<MacAddress> mac = MacAddress::parse(value);
            if (!mac) {
                error = fmt::format("mac={}: not a MAC address (use six hex bytes, e.g. 52:54:00:12:34:56)", value);
                return std::nullopt;
            }
            if (mac->multicast() || mac->zero()) {
                error = fmt::format("mac={}: {} address cannot be a network card's", value,
                                    mac->zero() ? "the all-zero" : "a multicast");
                return std::nullopt;
            }
            net.mac = mac;
        } else {
            error = fmt::format("unknown key '{}' (keys: {})", key, keys);
            return std::nullopt;
        }
    }
    if (!user && net.tap.empty()) {
        error = "tap=NAME or user is required";
        return std::nullopt;
    }
    return net;
}

std::optional<ShareConfig> parse_share_option(const std::string& text, std::string& error) {
    const std::vector<std::string> items = split_items(text);
    ShareConfig share;
    share.path = items[0];
    if (share.path.empty()) {
        error = "the directory comes first: --share PATH[,tag=TAG][,ro][,dev]";
        return std::nullopt;
    }
    std::set<std::string> seen;
    for (size_t i = 1; i < items.size(); ++i) {
        const std::string& item = items[i];
        const size_t equals = item.find('=');
        const std::string key = item.substr(0, equals);
        const bool has_value = equals != std::string::npos;
        if (key.empty()) {
            error = item.empty() ? "empty item (stray comma?)" : fmt::format("'{}' has no key", item);
            return std::nullopt;
        }
        const std::string slot = key == "rw" ? "ro" : key;  // ro and rw exclude each other
        if (!seen.insert(slot).second) {
            error = key == slot ? fmt::format("'{}' given twice", key) : "ro and rw both given";
            return std::nullopt;
        }
        if (key == "ro" || key == "rw" || key == "dev") {
            if (has_value) {
                error = fmt::format("'{}' takes no value", key);
                return std::nullopt;
            }
            if (key == "ro") share.read_only = true;
            if (key == "dev") share.allow_devices = true;
        } else if (key == "tag") {
            const std::string value = item.substr(equals + 1);
            if (value.empty() || value.size() > 255) {
                error = fmt::format("tag={}: a tag is 1 to 255 characters", value);
                return std::nullopt;
            }
            for (char c : value)
                if (c < 0x21 || c > 0x7e) {
                    error = fmt::format("tag={}: printable characters only, no spaces", value);
                    return std::nullopt;
                }
            share.tag = value;
        } else {
            error = fmt::format("unknown item '{}' (items: tag=TAG, ro, rw, dev)", item);
            return std::nullopt;
        }
    }
    if (share.tag.empty()) {
        std::string trimmed = share.path;
        while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
        const size_t slash = trimmed.rfind('/');
        std::string base = slash == std::string::npos ? trimmed : trimmed.substr(slash + 1);
        if (base.empty()) base = "root";
        bool printable = base.size() <= 255 && base != "." && base != "..";
        for (char c : base) printable = printable && c >= 0x21 && c <= 0x7e;
        if (!printable) {
            error = fmt::format("no tag can be made from '{}': give one with tag=TAG", share.path);
            return std::nullopt;
        }
        share.tag = base;
    }
    return share;
}

CliOutcome parse_command_line(const std::vector<std::string>& args, uint64_t host_memory) {
    CLI::App app{"minikvm: boot a Linux kernel in a KVM virtual machine", "minikvm"};
    app.set_version_flag("--version", "minikvm " MINIKVM_VERSION);
    app.get_formatter()->column_width(28);

    CommandLine result;
    MachineConfig& machine = result.machine;
    std::string memory_text = "256M";
    std::string initrd;
    std::string log_level = "warn";

    app.add_option("-k,--kernel", machine.kernel_path, "Linux kernel: bzImage or uncompressed ELF vmlinux")
        ->required();
    app.add_option("-i,--initrd", initrd, "initial ramdisk (cpio archive, optionally compressed)");
    auto* cmdline_option = app.add_option("-a,--cmdline", machine.command_line,
                                          "kernel command line [default: console=ttyS0, or console=hvc0 with --console virtio]");
    std::string console = "serial";
    std::string trace;
    app.add_option("--trace", trace,
                   "debug traces on stderr (info lines; raises --log-level to info): virtio (every register access, "
                   "kick, interrupt and chain of the virtio devices), pci (every configuration access), vfio (assigned "
                   "devices: configuration accesses, BAR mappings, interrupt modes), all; "
                   "comma-separated");
    app.add_option("--console", console,
                   "device wired to the terminal: serial (8250 COM1), virtio (virtio-console, the guest's hvc0; the "
                   "8250 still prints) or none")
        ->capture_default_str()
        ->check(CLI::IsMember({"serial", "virtio", "none"}));
    app.add_option("-c,--cpus", machine.cpus, "number of vCPUs")->capture_default_str()->check(CLI::Range(1, 254));
    app.add_option("-m,--memory", memory_text, "guest RAM: 256M, 1G, 512K, or a number of MiB")->capture_default_str();
    std::vector<std::string> disk_texts;
    // One value per occurrence, so a stray word after --disk is an error
    // rather than a second disk.
    app.add_option("--disk", disk_texts,
                   "virtio-blk disk, repeatable: path=FILE[,ro][,cache=none|writeback][,aio=io_uring|threads]"
                   "[,serial=ID]")
        ->allow_extra_args(false);
    std::vector<std::string> net_texts;
    app.add_option("--net", net_texts, "virtio-net card, repeatable: on a host tap, tap=NAME[,mac=MAC]; or on a user-mode network (no privilege), user[,hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...[,mac=MAC]")
        ->allow_extra_args(false);
    std::string msix = "on";
    app.add_option("--msix", msix,
                   "MSI-X on every virtio device (on: a vector per queue, as Linux prefers; off: INTx only, to test "
                   "a driver's INTx path)")
        ->capture_default_str()
        ->check(CLI::IsMember({"on", "off"}));
    std::string poll_text;
    app.add_option("--poll", poll_text,
                   "device-side polling: after work, the event loop keeps looking at the devices' rings for up to "
                   "this long with the guest's notifications off, adapting the window to the load (e.g. 50us, "
                   "200us; 0: off)")
        ->default_str(fmt::format("{}us", MachineConfig::kDefaultPollWindow.count() / 1000));
    std::vector<std::string> vfio_texts;
    app.add_option("--vfio-pci", vfio_texts,
                   "assign a host PCI device bound to vfio-pci, repeatable: [DOMAIN:]BUS:DEV.FN as lspci prints it, "
                   "or its /sys/bus/pci/devices/... directory")
        ->allow_extra_args(false);
    std::vector<std::string> share_texts;
    app.add_option("--share", share_texts,
                   "share a host directory over virtio-9p (9P2000.L), repeatable: PATH[,tag=TAG][,ro][,dev]; the "
                   "guest mounts it with: mount -t 9p -o trans=virtio,version=9p2000.L TAG DIR")
        ->allow_extra_args(false);
    std::string exec_command;
    auto* exec_option = app.add_option(
        "--exec", exec_command,
        "run CMD (with /bin/sh -c) in the guest against the host's files, read-only under a writable overlay "
        "(--share DIR,rw mounts DIR writable at its path), as you, in this directory; minikvm exits with its status "
        "(125: the guest or minikvm failed first, 126/127: not executable/not found). No --initrd: minikvm builds its own");
    app.add_flag("--rng", machine.rng, "virtio-rng: random bytes from the host (getrandom) for the guest's /dev/hwrng");
    std::string timeout_text;
    app.add_option("--timeout", timeout_text,
                   "end the run with exit code 20 after this long (e.g. 90s, 5m, 1h, 500ms; a bare number is seconds), "
                   "saying what every vCPU was doing");
    std::string fail_on_text;
    app.add_option("--fail-on", fail_on_text,
                   "kernel reports on a console that make the exit code 22 (the run goes on to its end; the report "
                   "is saved): all or a comma-separated list of " + kernel_report_names());
    std::string gdb_text;
    app.add_option("--gdb", gdb_text,
                   "serve the GDB remote protocol on ADDRESS: tcp:HOST:PORT, tcp::PORT (127.0.0.1), unix:PATH or a "
                   "path; one gdb at a time (target remote ...)");
    app.add_flag("--gdb-wait", machine.gdb_wait, "with --gdb: hold every vCPU before its first instruction until gdb "
                 "continues");
    std::string console_log;
    app.add_option("--console-log", console_log, "also write everything the guest prints, on every console, to FILE");
    std::string report;
    app.add_option("--report", report,
                   "write a JSON report to FILE at exit: exit code, verdict, cause, hints, the saved kernel report "
                   "and boot timings");
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off (logs go to stderr)")
        ->capture_default_str()
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));

    std::vector<std::string> reversed(args.rbegin(), args.rend());
    try {
        app.parse(reversed);
    } catch (const CLI::CallForHelp&) {
        return {std::nullopt, 0, app.help(), false};
    } catch (const CLI::CallForVersion& version) {
        return {std::nullopt, 0, std::string(version.what()) + "\n", false};
    } catch (const CLI::ParseError& error) {
        return {std::nullopt, to_int(ExitCode::Usage), fmt::format("minikvm: {} (see --help)\n", error.what()), true};
    }

    auto usage_error = [](const std::string& text) {
        return CliOutcome{std::nullopt, to_int(ExitCode::Usage), "minikvm: " + text + "\n", true};
    };
    std::optional<uint64_t> memory = parse_memory_size(memory_text);
    if (!memory) return usage_error(fmt::format("--memory {}: not a size (use e.g. 256M or 1G)", memory_text));
    if (*memory < kMinimumMemory)
        return usage_error(fmt::format("--memory {}: at least {} MiB is needed", memory_text, kMinimumMemory >> 20));
    if (*memory % 4096 != 0) return usage_error(fmt::format("--memory {}: must be a multiple of 4 KiB", memory_text));
    if (host_memory != 0 && *memory > host_memory)
        return usage_error(fmt::format("--memory {}: more than this host's {} MiB of RAM", memory_text, host_memory >> 20));
    machine.memory_bytes = *memory;
    machine.msix = msix == "on";
    for (const std::string& text : disk_texts) {
        std::string error;
        std::optional<DiskConfig> disk = parse_disk_option(text, error);
        if (!disk) return usage_error(fmt::format("--disk {}: {}", text, error));
        machine.disks.push_back(std::move(*disk));
    }
    for (const std::string& text : net_texts) {
        std::string error;
        std::optional<NetConfig> net = parse_net_option(text, error);
        if (!net) return usage_error(fmt::format("--net {}: {}", text, error));
        // Caught here, not later as a tap "busy" or two cards fighting over
        // one address on the wire.
        for (const NetConfig& earlier : machine.nets) {
            if (net->backend == NetConfig::Backend::Tap && earlier.tap == net->tap)
                return usage_error(fmt::format("--net {}: tap '{}' named twice", text, net->tap));
            if (net->mac && earlier.mac == net->mac)
                return usage_error(fmt::format("--net {}: mac={} given to two cards", text, net->mac->to_string()));
        }
        machine.nets.push_back(std::move(*net));
    }
    for (const std::string& text : share_texts) {
        std::string error;
        std::optional<ShareConfig> share = parse_share_option(text, error);
        if (!share) return usage_error(fmt::format("--share {}: {}", text, error));
        for (const ShareConfig& earlier : machine.shares)
            if (earlier.tag == share->tag)
                return usage_error(fmt::format("--share {}: tag '{}' used twice (give each share its own tag=)",
                                               text, share->tag));
        machine.shares.push_back(std::move(*share));
    }
    for (const std::string& text : vfio_texts) {
        std::string error;
        std::optional<HostPciAddress> address = parse_host_pci_address(text, error);
        if (!address) return usage_error(fmt::format("--vfio-pci {}: {}", text, error));
        for (const auto& earlier : machine.vfio_devices)
            if (earlier.address == *address)
                return usage_error(fmt::format("--vfio-pci {}: {} assigned twice", text, address->to_string()));
        machine.vfio_devices.push_back({"--vfio-pci " + text, *address});
    }
    if (!initrd.empty()) machine.initrd_path = initrd;
    if (!gdb_text.empty()) {
        std::string error;
        machine.gdb = gdb::parse_gdb_address(gdb_text, error);
        if (!machine.gdb) return usage_error(fmt::format("--gdb {}: {}", gdb_text, error));
    }
    if (machine.gdb_wait && !machine.gdb) return usage_error("--gdb-wait needs --gdb ADDRESS");
    if (!timeout_text.empty()) {
        std::optional<std::chrono::milliseconds> timeout = parse_duration(timeout_text);
        if (!timeout || timeout->count() == 0)
            return usage_error(fmt::format("--timeout {}: not a duration (use e.g. 90s, 5m, 1h or 500ms)", timeout_text));
        machine.timeout = *timeout;
    }
    if (!poll_text.empty()) {
        std::optional<std::chrono::nanoseconds> window = parse_poll_window(poll_text);
        if (!window)
            return usage_error(fmt::format("--poll {}: not a poll window (use 0 or e.g. 50us, 200us, 1ms; at most 10ms)",
                                           poll_text));
        machine.poll_window = *window;
    }
    if (!fail_on_text.empty()) {
        std::string bad;
        std::optional<uint32_t> kinds = parse_fail_on(fail_on_text, bad);
        if (!kinds)
            return usage_error(fmt::format("--fail-on {}: unknown report '{}'; use all or a comma-separated list of {}",
                                           fail_on_text, bad, kernel_report_names()));
        machine.fail_on = *kinds;
    }
    if (!console_log.empty()) machine.console_log_path = console_log;
    if (!report.empty()) result.report_path = report;
    if (!trace.empty()) {
        std::optional<TraceFlags> flags = parse_trace_list(trace);
        if (!flags) return usage_error(fmt::format("--trace {}: use a comma-separated list of {}", trace, kTraceNames));
        machine.trace = *flags;
    }
    machine.console = console == "virtio" ? ConsoleMode::Virtio : console == "none" ? ConsoleMode::None : ConsoleMode::Serial;
    // Every virtio device and assigned device is a PCI function with an
    // interrupt line of its own.
    const size_t lines = PciHostBridge::kInterruptGsis.size();
    if (machine.vfio_devices.size() > lines)
        return usage_error(fmt::format("--vfio-pci given {} times: at most {} devices fit", machine.vfio_devices.size(), lines));
    if (std::string problem = virtio_slot_problem(machine, lines - machine.vfio_devices.size()); !problem.empty())
        return usage_error(machine.vfio_devices.empty()
                               ? problem
                               : fmt::format("{} (with {} --vfio-pci device(s) taking the others)", problem,
                                             machine.vfio_devices.size()));
    if (exec_option->count() > 0) {
        if (exec_command.empty()) return usage_error("--exec: the command is empty");
        if (!initrd.empty()) return usage_error("--exec builds its own initramfs: drop --initrd");
        if (console != "serial" && console != "virtio")
            return usage_error(fmt::format("--exec {}: the command's input and output are the virtio console; "
                                           "drop --console {}", exec_command, console));
        machine.exec = MachineConfig::Exec{exec_command};
        machine.console = ConsoleMode::Virtio;
        ShareConfig root;
        root.path = "/";
        root.tag = "minikvm-root";
        root.read_only = true;
        for (const ShareConfig& share : machine.shares)
            if (share.tag == root.tag) return usage_error(fmt::format("--share: tag '{}' is --exec's", root.tag));
        machine.shares.push_back(root);
        if (std::string problem = virtio_slot_problem(machine, lines - machine.vfio_devices.size()); !problem.empty())
            return usage_error(problem + " (--exec takes one more for the host's root)");
        // The kernel's own messages stay off the command's output (the
        // console watcher still reads them); the user's words come after.
        const std::string base = "console=ttyS0 quiet";
        machine.command_line = cmdline_option->count() == 0 ? base : base + " " + machine.command_line;
    } else if (cmdline_option->count() == 0) {
        machine.command_line = machine.console == ConsoleMode::Virtio ? "console=hvc0" : "console=ttyS0";
    }
    result.log_level = spdlog::level::from_str(log_level);
    // Traces are info lines: asking for one must not be silenced by the default level.
    if (machine.trace.any() && result.log_level > spdlog::level::info)
        result.log_level = spdlog::level::info;
    return {result, 0, "", false};
}

}  // namespace minikvm
