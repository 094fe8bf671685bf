#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include "vmm/app/cli.h"
#include "vmm/app/console_watcher.h"

using namespace minikvm;
using Catch::Matchers::Contains;

namespace {
constexpr uint64_t kHost = 8ULL << 30;
CliOutcome parse(std::vector<std::string> args) { return parse_command_line(args, kHost); }

// `--OPTION VALUE` is refused with one line naming the option and its value,
// containing `text`, exit code 2.
void expect_option_error(const std::string& option, const std::string& value, const std::string& text) {
    auto outcome = parse({"-k", "bz", "--" + option, value});
    CHECK_FALSE(outcome.command_line);
    CHECK(outcome.exit_code == 2);
    CHECK(outcome.message_is_error);
    CHECK_THAT(outcome.message, Contains("--" + option + " " + value + ": "));
    CHECK_THAT(outcome.message, Contains(text));
    CHECK(outcome.message.find('\n') == outcome.message.size() - 1);
}
}  // namespace

TEST_CASE("memory sizes accept suffixes and plain MiB") {
    CHECK(parse_memory_size("256M") == 256ULL << 20);
    CHECK(parse_memory_size("256") == 256ULL << 20);
    CHECK(parse_memory_size("1G") == 1ULL << 30);
    CHECK(parse_memory_size("1g") == 1ULL << 30);
    CHECK(parse_memory_size("2GiB") == 2ULL << 30);
    CHECK(parse_memory_size("512k") == 512ULL << 10);
    CHECK(parse_memory_size("1T") == 1ULL << 40);
    CHECK_FALSE(parse_memory_size(""));
    CHECK_FALSE(parse_memory_size("0"));
    CHECK_FALSE(parse_memory_size("0G"));
    CHECK_FALSE(parse_memory_size("M"));
    CHECK_FALSE(parse_memory_size("-1G"));
    CHECK_FALSE(parse_memory_size("1.5G"));
    CHECK_FALSE(parse_memory_size("12X"));
    CHECK_FALSE(parse_memory_size("99999999999999999999"));
    CHECK_FALSE(parse_memory_size("17179869184G"));  // 2^64 bytes
}

TEST_CASE("good command lines give a machine config with defaults") {
    auto outcome = parse({"--kernel", "bz"});
    REQUIRE(outcome.command_line);
    const MachineConfig& m = outcome.command_line->machine;
    CHECK(m.kernel_path == "bz");
    CHECK_FALSE(m.initrd_path);
    CHECK(m.command_line == "console=ttyS0");
    CHECK(m.cpus == 1);
    CHECK(m.memory_bytes == 256ULL << 20);
    CHECK(outcome.command_line->log_level == spdlog::level::warn);

    outcome = parse({"-k", "vmlinux", "-i", "initrd", "-a", "console=ttyS0 quiet", "-c", "2", "-m", "1G",
                     "--log-level", "debug"});
    REQUIRE(outcome.command_line);
    CHECK(outcome.command_line->machine.initrd_path == "initrd");
    CHECK(outcome.command_line->machine.command_line == "console=ttyS0 quiet");
    CHECK(outcome.command_line->machine.cpus == 2);
    CHECK(outcome.command_line->machine.memory_bytes == 1ULL << 30);
    CHECK(outcome.command_line->log_level == spdlog::level::debug);
    CHECK(outcome.command_line->machine.console == ConsoleMode::Serial);
}

TEST_CASE("--trace turns traces on and makes sure info lines are shown") {
    auto outcome = parse({"-k", "bz", "--trace", "virtio"});
    REQUIRE(outcome.command_line);
    CHECK(outcome.command_line->machine.trace == TraceFlags{.virtio = true, .pci = false});
    CHECK(outcome.command_line->log_level == spdlog::level::info);
    outcome = parse({"-k", "bz", "--trace", "all", "--log-level", "debug"});
    REQUIRE(outcome.command_line);
    CHECK(outcome.command_line->machine.trace == TraceFlags{.virtio = true, .pci = true, .vfio = true});
    CHECK(outcome.command_line->log_level == spdlog::level::debug);
    outcome = parse({"-k", "bz", "--trace", "vfio"});
    REQUIRE(outcome.command_line);
    CHECK(outcome.command_line->log_level == spdlog::level::info);
}

TEST_CASE("--console picks the terminal's device and the default console= follows it") {
    auto outcome = parse({"-k", "bz", "--console", "virtio"});
    REQUIRE(outcome.command_line);
    CHECK(outcome.command_line->machine.console == ConsoleMode::Virtio);
    CHECK(outcome.command_line->machine.command_line == "console=hvc0");

    outcome = parse({"-k", "bz", "--console", "virtio", "-a", "console=ttyS0 console=hvc0"});
    REQUIRE(outcome.command_line);
    CHECK(outcome.command_line->machine.command_line == "console=ttyS0 console=hvc0");

    outcome = parse({"-k", "bz", "--console", "none"});
    REQUIRE(outcome.command_line);
    CHECK(outcome.command_line->machine.console == ConsoleMode::None);
    CHECK(outcome.command_line->machine.command_line == "console=ttyS0");
}

TEST_CASE("bad command lines get one line and exit code 2") {
    auto expect_usage_error = [](std::vector<std::string> args, const std::string& text) {
        auto outcome = parse(args);
        CHECK_FALSE(outcome.command_line);
        CHECK(outcome.exit_code == 2);
        CHECK(outcome.message_is_error);
        CHECK_THAT(outcome.message, Contains(text));
        // One line: the only newline is the last character.
        CHECK(outcome.message.find('\n') == outcome.message.size() - 1);
    };
    expect_usage_error({}, "--kernel is required");
    expect_usage_error({"-k", "bz", "--bogus"}, "--bogus");
    expect_usage_error({"-k", "bz", "-c", "0"}, "--cpus");
    expect_usage_error({"-k", "bz", "-c", "255"}, "--cpus");
    expect_usage_error({"-k", "bz", "-c", "two"}, "--cpus");
    expect_usage_error({"-k", "bz", "-m", "0"}, "--memory 0");
    expect_usage_error({"-k", "bz", "-m", "lots"}, "--memory lots");
    expect_usage_error({"-k", "bz", "-m", "4M"}, "at least 16 MiB");
    expect_usage_error({"-k", "bz", "-m", "1000001k"}, "multiple of 4 KiB");
    expect_usage_error({"-k", "bz", "-m", "9G"}, "more than this host");
    expect_usage_error({"-k", "bz", "--log-level", "loud"}, "--log-level");
    expect_usage_error({"-k", "bz", "--console", "hvc0"}, "--console");
    expect_usage_error({"-k", "bz", "--trace", "virtio,usb"}, "--trace virtio,usb");
    expect_usage_error({"-k"}, "--kernel");
}

TEST_CASE("--help and --version print to stdout and exit 0") {
    auto help = parse({"--help"});
    CHECK_FALSE(help.command_line);
    CHECK(help.exit_code == 0);
    CHECK_FALSE(help.message_is_error);
    CHECK_THAT(help.message, Contains("--kernel"));
    auto version = parse({"--version"});
    CHECK(version.exit_code == 0);
    CHECK_THAT(version.message, Contains("minikvm"));
}

TEST_CASE("--disk takes path, ro, cache, aio and serial, and repeats in order") {
    auto outcome = parse({"-k", "bz", "--disk", "path=a.img", "--disk",
                          "path=/x/b,,c.img,ro,cache=none,aio=threads,serial=SN-0001"});
    REQUIRE(outcome.command_line);
    const std::vector<DiskConfig>& disks = outcome.command_line->machine.disks;
    REQUIRE(disks.size() == 2);
    CHECK(disks[0].path == "a.img");
    CHECK_FALSE(disks[0].read_only);
    CHECK(disks[0].cache == DiskCache::Writeback);
    CHECK(disks[0].aio == DiskAio::IoUring);
    CHECK(disks[0].serial.empty());
    CHECK(disks[1].path == "/x/b,c.img");  // ",," is a literal comma
    CHECK(disks[1].read_only);
    CHECK(disks[1].cache == DiskCache::None);
    CHECK(disks[1].aio == DiskAio::Threads);
    CHECK(disks[1].serial == "SN-0001");

    // Order of items does not matter; writeback can be said explicitly.
    std::string error;
    auto disk = parse_disk_option("serial=12345678901234567890,cache=writeback,path=p", error);
    REQUIRE(disk);
    CHECK(disk->serial == "12345678901234567890");
    CHECK(disk->cache == DiskCache::Writeback);
    CHECK(parse({"-k", "bz"}).command_line->machine.disks.empty());
    disk = parse_disk_option("path=a,,", error);  // a file named "a,"
    REQUIRE(disk);
    CHECK(disk->path == "a,");
}

TEST_CASE("a malformed --disk is one line naming the option, exit code 2") {
    const auto expect_disk_error = [](const std::string& value, const std::string& text) { expect_option_error("disk", value, text); };
    expect_disk_error("ro", "path=FILE is required");
    expect_disk_error("path=", "path= is empty");
    expect_disk_error("disk.img", "is not KEY=VALUE");
    expect_disk_error("path=a,cache=unsafe", "cache=unsafe");
    expect_disk_error("path=a,aio=native", "aio=native");
    expect_disk_error("path=a,ro=yes", "'ro' takes no value");
    expect_disk_error("path=a,path=b", "'path' given twice");
    expect_disk_error("path=a,size=1G", "unknown key 'size'");
    expect_disk_error("path=a,", "empty item");
    expect_disk_error("path=a,=x", "has no key");
    expect_disk_error("path=a,serial=123456789012345678901", "at most 20 characters");
    expect_disk_error("path=a,serial=tab\there", "printable ASCII");

    std::vector<std::string> nine{"-k", "bz"};
    for (int i = 0; i < 9; ++i) nine.insert(nine.end(), {"--disk", "path=d" + std::to_string(i)});
    auto too_many = parse(nine);
    CHECK(too_many.exit_code == 2);
    CHECK_THAT(too_many.message, Contains("at most 8 disks"));
    nine.pop_back();
    nine.pop_back();
    CHECK(parse(nine).command_line);
    nine.insert(nine.end(), {"--console", "virtio"});
    CHECK_THAT(parse(nine).message, Contains("at most 7 disks fit next to --console virtio"));

    auto missing_value = parse({"-k", "bz", "--disk"});
    CHECK(missing_value.exit_code == 2);
    CHECK_THAT(missing_value.message, Contains("--disk"));
}

TEST_CASE("--net gives one tap per option, with or without a MAC") {
    auto outcome = parse({"-k", "bz", "--net", "tap=tap0", "--net", "mac=52:54:00:AB:cd:EF,tap=vm-net.1"});
    REQUIRE(outcome.command_line);
    const std::vector<NetConfig>& nets = outcome.command_line->machine.nets;
    REQUIRE(nets.size() == 2);
    CHECK(nets[0].tap == "tap0");
    CHECK_FALSE(nets[0].mac);
    CHECK(nets[1].tap == "vm-net.1");
    REQUIRE(nets[1].mac);
    CHECK(nets[1].mac->to_string() == "52:54:00:ab:cd:ef");
    CHECK(parse({"-k", "bz"}).command_line->machine.nets.empty());

    std::string error;
    auto dashes = parse_net_option("tap=t,mac=02-00-00-00-00-01", error);
    REQUIRE(dashes);
    CHECK(dashes->mac->bytes == std::array<uint8_t, 6>{2, 0, 0, 0, 0, 1});
    CHECK(parse_net_option("tap=123456789012345", error));  // 15 characters: the kernel's limit
}

TEST_CASE("--net user takes hostfwd rules in QEMU's spelling, on loopback unless told otherwise") {
    auto outcome = parse({"-k", "bz", "--net", "user", "--net",
                          "user,hostfwd=tcp::8080-:80,hostfwd=udp:0.0.0.0:5353-10.0.2.15:53,mac=52:54:00:00:00:01",
                          "--net", "tap=tap0"});
    REQUIRE(outcome.command_line);
    const std::vector<NetConfig>& nets = outcome.command_line->machine.nets;
    REQUIRE(nets.size() == 3);
    CHECK(nets[0].backend == NetConfig::Backend::User);
    CHECK(nets[0].forwards.empty());
    CHECK(nets[2].backend == NetConfig::Backend::Tap);
    const std::vector<HostForward>& forwards = nets[1].forwards;
    REQUIRE(forwards.size() == 2);
    CHECK_FALSE(forwards[0].udp);
    CHECK(forwards[0].host_address.s_addr == htonl(INADDR_LOOPBACK));
    CHECK(forwards[0].host_port == 8080);
    CHECK(forwards[0].guest_address.s_addr == 0);
    CHECK(forwards[0].guest_port == 80);
    CHECK(forwards[1].udp);
    CHECK(forwards[1].host_address.s_addr == 0);
    CHECK(forwards[1].host_port == 5353);
    CHECK(forwards[1].guest_address.s_addr == htonl(0x0a00020f));
    CHECK(forwards[1].guest_port == 53);
    CHECK(nets[1].mac->to_string() == "52:54:00:00:00:01");
}

TEST_CASE("a malformed --net user rule is one line naming the rule, exit code 2") {
    const auto expect = [](const std::string& value, const std::string& text) { expect_option_error("net", value, text); };
    expect("user,hostfwd=8080:80", "use [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT");
    expect("user,hostfwd=tcp:8080-80", "use [tcp|udp]");
    expect("user,hostfwd=sctp::1-:2", "protocol 'sctp' is neither tcp nor udp");
    expect("user,hostfwd=tcp::0-:80", "host port '0' is not a port number");
    expect("user,hostfwd=tcp::65536-:80", "host port '65536'");
    expect("user,hostfwd=tcp::80-:", "guest port '' is not a port number");
    expect("user,hostfwd=tcp::8x-:80", "host port '8x'");
    expect("user,hostfwd=tcp:localhost:80-:80", "host address 'localhost' is not an IPv4 address");
    expect("user,hostfwd=tcp::80-10.0.2:80", "guest address '10.0.2' is not an IPv4 address");
    expect("user,hostfwd=tcp::80-:80,hostfwd=tcp:127.0.0.1:80-:81", "the host port is forwarded twice");
    expect("user,tap=t0", "unknown key 'tap' (keys: hostfwd, mac)");
    expect("tap=t0,hostfwd=tcp::80-:80", "unknown key 'hostfwd' (keys: tap, mac)");
    expect("tap=t0,user", "'user' comes first");
    expect("user,mac=01:00:5e:00:00:01", "a multicast address");
}

TEST_CASE("a malformed --net or a bad MAC is one line naming the option, exit code 2") {
    const auto expect_net_error = [](const std::string& value, const std::string& text) { expect_option_error("net", value, text); };
    expect_net_error("mac=52:54:00:12:34:56", "tap=NAME or user is required");
    expect_net_error("tap0", "is not KEY=VALUE");
    expect_net_error("tap=", "1 to 15 characters");
    expect_net_error("tap=1234567890123456", "1 to 15 characters");
    expect_net_error("tap=a/b", "not a valid interface name");
    expect_net_error("tap=a b", "not a valid interface name");
    expect_net_error("tap=..", "1 to 15 characters");
    expect_net_error("tap=a,tap=b", "'tap' given twice");
    expect_net_error("tap=a,vhost=on", "unknown key 'vhost'");
    expect_net_error("tap=a,", "empty item");
    expect_net_error("tap=a,mac=52:54:00:12:34", "not a MAC address");
    expect_net_error("tap=a,mac=52:54:00:12:34:5g", "not a MAC address");
    expect_net_error("tap=a,mac=52:54-00:12:34:56", "not a MAC address");
    expect_net_error("tap=a,mac=525400123456", "not a MAC address");
    expect_net_error("tap=a,mac=01:00:5e:00:00:01", "a multicast address");
    expect_net_error("tap=a,mac=00:00:00:00:00:00", "the all-zero address");

    // Two cards on one tap or with one MAC: caught while parsing.
    auto twice = parse({"-k", "bz", "--net", "tap=t0", "--net", "tap=t0,mac=52:54:00:12:34:56"});
    CHECK(twice.exit_code == 2);
    CHECK(twice.message == "minikvm: --net tap=t0,mac=52:54:00:12:34:56: tap 't0' named twice\n");
    auto same_mac = parse({"-k", "bz", "--net", "tap=t0,mac=52:54:00:12:34:56", "--net", "mac=52:54:00:12:34:56,tap=t1"});
    CHECK(same_mac.exit_code == 2);
    CHECK(same_mac.message == "minikvm: --net mac=52:54:00:12:34:56,tap=t1: mac=52:54:00:12:34:56 given to two cards\n");
    CHECK(parse({"-k", "bz", "--net", "tap=t0", "--net", "tap=t1"}).exit_code == 0);  // random MACs differ

    // Every virtio device is a PCI function with an interrupt of its own.
    std::vector<std::string> nine{"-k", "bz"};
    for (int i = 0; i < 4; ++i) nine.insert(nine.end(), {"--disk", "path=d" + std::to_string(i)});
    for (int i = 0; i < 5; ++i) nine.insert(nine.end(), {"--net", "tap=t" + std::to_string(i)});
    auto too_many = parse(nine);
    CHECK(too_many.exit_code == 2);
    CHECK_THAT(too_many.message, Contains("--disk and --net given 9 times together: at most 8 devices fit"));
}

TEST_CASE("--rng adds a virtio-rng, counted like every virtio device") {
    auto plain = parse({"-k", "bz"});
    REQUIRE(plain.command_line);
    CHECK_FALSE(plain.command_line->machine.rng);
    auto with_rng = parse({"-k", "bz", "--rng"});
    REQUIRE(with_rng.command_line);
    CHECK(with_rng.command_line->machine.rng);

    // The slot check comes from the device registry: every device counts.
    std::vector<std::string> args{"-k", "bz", "--rng"};
    for (int i = 0; i < 7; ++i) args.insert(args.end(), {"--disk", "path=d" + std::to_string(i)});
    CHECK(parse(args).exit_code == 0);
    args.insert(args.end(), {"--disk", "path=d7"});
    CHECK(parse(args).message == "minikvm: --disk given 8 times: at most 7 disks fit next to --rng\n");
    args.insert(args.end(), {"--console", "virtio", "--net", "tap=t0"});
    CHECK(parse(args).message ==
          "minikvm: --disk and --net given 9 times together: at most 6 devices fit next to --console virtio and --rng\n");
}

TEST_CASE("--msix on|off: MSI-X on every virtio device, or INTx only") {
    auto plain = parse({"-k", "bz"});
    REQUIRE(plain.command_line);
    CHECK(plain.command_line->machine.msix);
    auto off = parse({"-k", "bz", "--msix", "off"});
    REQUIRE(off.command_line);
    CHECK_FALSE(off.command_line->machine.msix);
    CHECK(parse({"-k", "bz", "--msix", "on"}).command_line->machine.msix);
    auto bad = parse({"-k", "bz", "--msix", "maybe"});
    CHECK(bad.exit_code == 2);
    CHECK_THAT(bad.message, Contains("--msix"));
}

TEST_CASE("--poll WINDOW: device-side polling window, 0 turns it off") {
    using std::chrono::nanoseconds;
    CHECK(parse_poll_window("0") == nanoseconds(0));
    CHECK(parse_poll_window("50us") == nanoseconds(50'000));
    CHECK(parse_poll_window("2ms") == nanoseconds(2'000'000));
    CHECK(parse_poll_window("750ns") == nanoseconds(750));
    CHECK(parse_poll_window("10ms") == nanoseconds(10'000'000));
    CHECK_FALSE(parse_poll_window("11ms"));
    CHECK_FALSE(parse_poll_window("50"));  // a unit is needed, except for 0
    CHECK_FALSE(parse_poll_window("us"));
    CHECK_FALSE(parse_poll_window("-5us"));
    CHECK_FALSE(parse_poll_window("5s"));
    auto plain = parse({"-k", "bz"});
    REQUIRE(plain.command_line);
    CHECK(plain.command_line->machine.poll_window == MachineConfig::kDefaultPollWindow);
    auto off = parse({"-k", "bz", "--poll", "0"});
    REQUIRE(off.command_line);
    CHECK(off.command_line->machine.poll_window == nanoseconds(0));
    auto window = parse({"-k", "bz", "--poll", "200us"});
    REQUIRE(window.command_line);
    CHECK(window.command_line->machine.poll_window == nanoseconds(200'000));
    expect_option_error("poll", "forever", "not a poll window");
    expect_option_error("poll", "1s", "at most 10ms");
}

TEST_CASE("verdict options: --timeout, --fail-on, --console-log") {
    using std::chrono::milliseconds;
    CHECK(parse_duration("90s") == milliseconds(90'000));
    CHECK(parse_duration("90") == milliseconds(90'000));
    CHECK(parse_duration("500ms") == milliseconds(500));
    CHECK(parse_duration("5m") == milliseconds(300'000));
    CHECK(parse_duration("2h") == milliseconds(7'200'000));
    CHECK_FALSE(parse_duration(""));
    CHECK_FALSE(parse_duration("s"));
    CHECK_FALSE(parse_duration("1.5s"));
    CHECK_FALSE(parse_duration("-1s"));
    CHECK_FALSE(parse_duration("10d"));
    CHECK_FALSE(parse_duration("9999999999"));

    auto outcome = parse({"-k", "bz", "--timeout", "20s", "--fail-on", "oops,warn", "--console-log", "c.txt"});
    REQUIRE(outcome.command_line);
    const MachineConfig& m = outcome.command_line->machine;
    CHECK(m.timeout == milliseconds(20'000));
    CHECK(m.fail_on == ((1u << static_cast<unsigned>(KernelReport::Oops)) | (1u << static_cast<unsigned>(KernelReport::Warn))));
    CHECK(m.console_log_path == "c.txt");
    auto plain = parse({"-k", "bz"});
    REQUIRE(plain.command_line);
    CHECK_FALSE(plain.command_line->machine.timeout);
    CHECK(plain.command_line->machine.fail_on == 0);

    CHECK(parse({"-k", "bz", "--timeout", "0s"}).message == "minikvm: --timeout 0s: not a duration (use e.g. 90s, 5m, 1h or 500ms)\n");
    CHECK(parse({"-k", "bz", "--fail-on", "warn,bogus"}).message ==
          "minikvm: --fail-on warn,bogus: unknown report 'bogus'; use all or a comma-separated list of "
          "oops,bug,warn,kasan,ubsan,lockdep,hung-task,softlockup,rcu-stall\n");
}

TEST_CASE("a random MAC is locally administered unicast, and differs between draws") {
    const MacAddress a = MacAddress::random_local();
    const MacAddress b = MacAddress::random_local();
    for (const MacAddress& mac : {a, b}) {
        CHECK((mac.bytes[0] & 0x02) != 0);
        CHECK_FALSE(mac.multicast());
        CHECK(MacAddress::parse(mac.to_string()) == mac);
    }
    CHECK_FALSE(a == b);  // 46 random bits: a clash here means no randomness at all
}

TEST_CASE("--share: a directory with its tag, ro/rw and dev; tags default to the last component") {
    auto outcome = parse({"-k", "bz", "--share", "/srv/data/", "--share", "/,ro,tag=hostroot", "--share",
                          "/tmp/a,,b,rw,dev"});
    REQUIRE(outcome.command_line);
    const auto& shares = outcome.command_line->machine.shares;
    REQUIRE(shares.size() == 3);
    CHECK(shares[0].path == "/srv/data/");
    CHECK(shares[0].tag == "data");
    CHECK_FALSE(shares[0].read_only);
    CHECK(shares[1].tag == "hostroot");
    CHECK(shares[1].read_only);
    CHECK(shares[2].path == "/tmp/a,b");
    CHECK(shares[2].tag == "a,b");
    CHECK(shares[2].allow_devices);
    std::string error;
    auto root = parse_share_option("/", error);
    REQUIRE(root);
    CHECK(root->tag == "root");
}

TEST_CASE("a malformed --share is one line naming the option, exit code 2") {
    auto expect_share_error = [](std::vector<std::string> values, const std::string& text) {
        std::vector<std::string> args{"-k", "bz"};
        for (const std::string& value : values) {
            args.push_back("--share");
            args.push_back(value);
        }
        auto outcome = parse(args);
        CHECK_FALSE(outcome.command_line);
        CHECK(outcome.exit_code == 2);
        CHECK_THAT(outcome.message, Contains("--share " + values.back() + ": "));
        CHECK_THAT(outcome.message, Contains(text));
    };
    expect_share_error({",ro"}, "the directory comes first");
    expect_share_error({"/a,ro,rw"}, "ro and rw both given");
    expect_share_error({"/a,ro,ro"}, "'ro' given twice");
    expect_share_error({"/a,ro=1"}, "'ro' takes no value");
    expect_share_error({"/a,tag="}, "1 to 255 characters");
    expect_share_error({"/a,tag=has space"}, "printable characters only");
    expect_share_error({"/a,cache=loose"}, "unknown item 'cache=loose'");
    expect_share_error({"/x/a", "/y/a"}, "tag 'a' used twice");
    expect_share_error({"/x/.."}, "give one with tag=TAG");
}

TEST_CASE("--exec: the virtio console, the host's root as a read-only share, the kernel quiet on ttyS0") {
    auto outcome = parse({"-k", "bz", "--exec", "make check", "--share", "/work,rw"});
    REQUIRE(outcome.command_line);
    const MachineConfig& machine = outcome.command_line->machine;
    REQUIRE(machine.exec);
    CHECK(machine.exec->command == "make check");
    CHECK(machine.console == ConsoleMode::Virtio);
    REQUIRE(machine.shares.size() == 2);
    CHECK(machine.shares[1].path == "/");
    CHECK(machine.shares[1].tag == "minikvm-root");
    CHECK(machine.shares[1].read_only);
    CHECK(machine.command_line == "console=ttyS0 quiet");
    auto with_words = parse({"-k", "bz", "--exec", "true", "--cmdline", "noxsave"});
    REQUIRE(with_words.command_line);
    CHECK(with_words.command_line->machine.command_line == "console=ttyS0 quiet noxsave");
}

TEST_CASE("--exec refuses an initrd, another console, an empty command and its own tag") {
    auto expect_exec_error = [](std::vector<std::string> args, const std::string& text) {
        auto outcome = parse(args);
        CHECK_FALSE(outcome.command_line);
        CHECK_THAT(outcome.message, Contains(text));
    };
    expect_exec_error({"-k", "bz", "--exec", "true", "--initrd", "i"}, "drop --initrd");
    expect_exec_error({"-k", "bz", "--exec", "true", "--console", "none"}, "drop --console none");
    expect_exec_error({"-k", "bz", "--exec", ""}, "the command is empty");
    expect_exec_error({"-k", "bz", "--exec", "true", "--share", "/x,tag=minikvm-root"}, "is --exec's");
}
