// The --exec initramfs: the config records, read back by the guest init's own
// parser (boot/exec_init/exec_config.c, compiled into this test), the records
// each side refuses, the archive around them, and the embedded init binary.

#include <catch2/catch.hpp>

#include <elf.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "boot/exec_init/exec_config.h"
#include "boot/exec_init_image.h"
#include "boot/exec_initramfs.h"
#include "newc_reader.h"
#include "vmm/core/error.h"

using namespace minikvm;
using Catch::Matchers::Contains;

namespace {

// The init's parser over a copy of `records`, which it keeps pointers into.
struct Parsed {
    explicit Parsed(std::vector<uint8_t> records) : buffer(records.begin(), records.end()) {
        char error_text[200] = "";
        result = exec_config_parse(buffer.data(), buffer.size(), &config, error_text, sizeof(error_text));
        error = error_text;
    }
    explicit Parsed(std::string_view records) : Parsed(std::vector<uint8_t>(records.begin(), records.end())) {}
    ~Parsed() { exec_config_free(&config); }
    Parsed(const Parsed&) = delete;
    Parsed& operator=(const Parsed&) = delete;

    std::vector<char> buffer;
    exec_config config{};
    int result = -1;
    std::string error;
};

std::vector<std::string> env_of(const exec_config& config) {
    std::vector<std::string> env;
    for (size_t i = 0; i < config.nenv; ++i) env.emplace_back(config.env[i]);
    return env;
}

// The message serialize_exec_spec fails with (checked to be one Usage
// line), or "" if it did not.
std::string serialize_error(const ExecSpec& spec) {
    try {
        serialize_exec_spec(spec);
    } catch (const VmmError& error) {
        CHECK(error.code() == ExitCode::Usage);
        CHECK(std::string(error.what()).find('\n') == std::string::npos);
        return error.what();
    }
    return "";
}

ExecSpec full_spec() {
    ExecSpec spec;
    spec.command = "printf '%s\\n' \"$HOME\"\nexit 3 # a=b:c";
    spec.cwd = "/home/alice/src:dir";
    spec.uid = 1000;
    spec.gid = 1001;
    spec.groups = {24, 27, 4294967294U};
    spec.env = {"HOME=/home/alice", "EMPTY=", "EQ=a=b", "MULTI=line1\nline2", "PS1=\\u@\\h:\\w$ "};
    spec.rows = 50;
    spec.cols = 65535;
    spec.stdin_terminal = true;
    spec.tty = "/dev/hvc0";
    spec.stderr_tty = "/dev/hvc1";
    spec.root_tag = "host-root";
    spec.root_writable = true;
    spec.shares = {{"data", "/srv/data", true}, {"cfg", "/etc/odd:name", false}};
    return spec;
}

}  // namespace

TEST_CASE("exec config: every field survives the round trip to the init's parser") {
    const ExecSpec spec = full_spec();
    Parsed parsed(serialize_exec_spec(spec));
    REQUIRE(parsed.result == 0);
    const exec_config& c = parsed.config;
    CHECK(std::string(c.cmd) == spec.command);
    CHECK(std::string(c.cwd) == spec.cwd);
    CHECK(c.uid == 1000);
    CHECK(c.gid == 1001);
    REQUIRE(c.ngroups == 3);
    CHECK(c.groups[0] == 24);
    CHECK(c.groups[1] == 27);
    CHECK(c.groups[2] == 4294967294U);
    CHECK(env_of(c) == spec.env);
    CHECK(c.env[c.nenv] == nullptr);  // ready for execve
    CHECK(c.rows == 50);
    CHECK(c.cols == 65535);
    CHECK(c.stdin_terminal == 1);
    CHECK(std::string(c.tty) == "/dev/hvc0");
    REQUIRE(c.stderr_tty != nullptr);
    CHECK(std::string(c.stderr_tty) == "/dev/hvc1");
    CHECK(std::string(c.root_tag) == "host-root");
    CHECK(c.root_writable == 1);
    REQUIRE(c.nshares == 2);
    CHECK(std::string(c.shares[0].tag) == "data");
    CHECK(std::string(c.shares[0].path) == "/srv/data");
    CHECK(c.shares[0].writable == 1);
    CHECK(std::string(c.shares[1].tag) == "cfg");
    CHECK(std::string(c.shares[1].path) == "/etc/odd:name");  // ':' in the path: PATH comes last
    CHECK(c.shares[1].writable == 0);
}

TEST_CASE("exec config: the records, byte for byte") {
    ExecSpec spec;
    spec.command = "true";
    spec.cwd = "/tmp";
    spec.uid = 7;
    spec.gid = 8;
    spec.groups = {9, 10};
    spec.env = {"A=1"};
    spec.shares = {{"t", "/x", true}};
    const std::vector<uint8_t> records = serialize_exec_spec(spec);
    const std::string expected(
        "cmd=true\0cwd=/tmp\0uid=7\0gid=8\0groups=9,10\0env=A=1\0rows=0\0cols=0\0stdin_terminal=0\0"
        "tty=/dev/hvc0\0root_tag=root\0root_writable=0\0share=t:1:/x\0",
        sizeof("cmd=true\0cwd=/tmp\0uid=7\0gid=8\0groups=9,10\0env=A=1\0rows=0\0cols=0\0stdin_terminal=0\0"
               "tty=/dev/hvc0\0root_tag=root\0root_writable=0\0share=t:1:/x\0") -
            1);
    CHECK(std::string(records.begin(), records.end()) == expected);
}

TEST_CASE("exec config: a spec with nothing set but the command gets the init's defaults") {
    ExecSpec spec;
    spec.command = "";
    spec.tty = "/dev/console";
    Parsed parsed(serialize_exec_spec(spec));
    REQUIRE(parsed.result == 0);
    CHECK(std::string(parsed.config.cmd).empty());
    CHECK(std::string(parsed.config.cwd) == "/");  // no cwd record
    CHECK(parsed.config.ngroups == 0);             // "groups=": no supplementary groups
    CHECK(parsed.config.nenv == 0);
    REQUIRE(parsed.config.env != nullptr);  // still an array for execve
    CHECK(parsed.config.env[0] == nullptr);
    CHECK(parsed.config.nshares == 0);
    CHECK(std::string(parsed.config.root_tag) == "root");
    CHECK(parsed.config.root_writable == 0);
    CHECK(parsed.config.stdin_terminal == 0);
}

TEST_CASE("exec config: the host refuses what the file cannot carry or the init would refuse") {
    auto with = [](auto change) {
        ExecSpec spec = full_spec();
        change(spec);
        return serialize_error(spec);
    };
    CHECK(with([](ExecSpec&) {}).empty());
    CHECK_THAT(with([](ExecSpec& s) { s.command = std::string("echo a\0b", 8); }),
               Contains("command contains a NUL byte"));
    CHECK_THAT(with([](ExecSpec& s) { s.cwd = "relative/dir"; }), Contains("'relative/dir' is not an absolute path"));
    CHECK_THAT(with([](ExecSpec& s) { s.cwd = std::string("/a\0b", 4); }), Contains("NUL"));
    CHECK_THAT(with([](ExecSpec& s) { s.env.push_back("NOEQUALS"); }), Contains("'NOEQUALS' is not NAME=value"));
    CHECK_THAT(with([](ExecSpec& s) { s.env.push_back("=value"); }), Contains("'=value' is not NAME=value"));
    CHECK_THAT(with([](ExecSpec& s) { s.env.push_back(std::string("A=b\0c", 5)); }), Contains("NUL"));
    CHECK_THAT(with([](ExecSpec& s) { s.uid = 4294967295U; }), Contains("uid 4294967295 is not a valid id"));
    CHECK_THAT(with([](ExecSpec& s) { s.gid = 4294967295U; }), Contains("gid 4294967295"));
    CHECK_THAT(with([](ExecSpec& s) { s.groups.push_back(4294967295U); }), Contains("group 4294967295"));
    CHECK_THAT(with([](ExecSpec& s) { s.tty = "hvc0"; }), Contains("console device 'hvc0' is not an absolute path"));
    CHECK_THAT(with([](ExecSpec& s) { s.root_tag = ""; }), Contains("root tag is empty"));
    CHECK_THAT(with([](ExecSpec& s) { s.root_tag = std::string("r\0", 2); }), Contains("NUL"));
    CHECK_THAT(with([](ExecSpec& s) { s.shares.push_back({"a:b", "/x", false}); }), Contains("'a:b' is empty or contains ':'"));
    CHECK_THAT(with([](ExecSpec& s) { s.shares.push_back({"", "/x", false}); }), Contains("share tag '' is empty"));
    CHECK_THAT(with([](ExecSpec& s) { s.shares.push_back({"t", "x", false}); }), Contains("share path 'x' is not an absolute path"));
    CHECK_THAT(with([](ExecSpec& s) { s.shares.push_back({"t", std::string("/x\0", 3), false}); }), Contains("NUL"));
}

TEST_CASE("exec config: the init's parser refuses what it does not understand") {
    struct Case {
        std::string records;
        std::string error;
    };
    using namespace std::string_literals;
    const Case cases[] = {
        {""s, "no cmd record"},
        {"cwd=/\0"s, "no cmd record"},
        {"cmd=a\0cmd=b\0"s, "key 'cmd' appears twice"},
        {"cmd=a\0uid=1\0uid=1\0"s, "key 'uid' appears twice"},
        {"cmd=a\0bogus=1\0"s, "unknown key 'bogus'"},
        {"cmd=a\0CMD=b\0"s, "unknown key 'CMD'"},
        {"cmd=a\0noequals\0"s, "record 'noequals' has no '='"},
        {"cmd=a\0\0"s, "record '' has no '='"},  // an empty record
        {"cmd=a"s, "not NUL-terminated"},
        {"cmd=a\0uid=1"s, "not NUL-terminated"},
        {"cmd=a\0uid=\0"s, "uid '' is not an id"},
        {"cmd=a\0uid=-1\0"s, "uid '-1' is not an id"},
        {"cmd=a\0uid=+1\0"s, "uid '+1' is not an id"},
        {"cmd=a\0uid= 1\0"s, "uid ' 1' is not an id"},
        {"cmd=a\0uid=0x10\0"s, "uid '0x10' is not an id"},
        {"cmd=a\0gid=4294967295\0"s, "gid '4294967295' is not an id"},
        {"cmd=a\0gid=99999999999999999999\0"s, "is not an id"},
        {"cmd=a\0rows=65536\0"s, "rows '65536' is not a number from 0 to 65535"},
        {"cmd=a\0cols=x\0"s, "cols 'x' is not a number"},
        {"cmd=a\0stdin_terminal=2\0"s, "stdin_terminal must be 0 or 1"},
        {"cmd=a\0root_writable=yes\0"s, "root_writable must be 0 or 1"},
        {"cmd=a\0root_writable=\0"s, "root_writable must be 0 or 1"},
        {"cmd=a\0groups=1,,2\0"s, "groups '1,,2' is not"},
        {"cmd=a\0groups=,1\0"s, "groups ',1' is not"},
        {"cmd=a\0groups=1,\0"s, "groups '1,' is not"},
        {"cmd=a\0groups=1;2\0"s, "groups '1;2' is not"},
        {"cmd=a\0groups=4294967295\0"s, "groups '4294967295' is not"},
        {"cmd=a\0env=NOVALUE\0"s, "env record 'NOVALUE' is not NAME=value"},
        {"cmd=a\0env==x\0"s, "env record '=x' is not NAME=value"},
        {"cmd=a\0cwd=home\0"s, "cwd 'home' is not an absolute path"},
        {"cmd=a\0cwd=\0"s, "cwd '' is not an absolute path"},
        {"cmd=a\0tty=hvc0\0"s, "tty 'hvc0' is not an absolute path"},
        {"cmd=a\0stderr_tty=hvc1\0"s, "stderr_tty 'hvc1' is not an absolute path"},
        {"cmd=a\0root_tag=\0"s, "root_tag is empty"},
        {"cmd=a\0share=tag:1\0"s, "is not TAG:WRITABLE:PATH"},
        {"cmd=a\0share=tag\0"s, "is not TAG:WRITABLE:PATH"},
        {"cmd=a\0share=:1:/x\0"s, "empty tag"},
        {"cmd=a\0share=t:yes:/x\0"s, "WRITABLE must be 0 or 1, not 'yes'"},
        {"cmd=a\0share=t:1:x\0"s, "path 'x' is not absolute"},
        {"cmd=a\0share=t:1:\0"s, "path '' is not absolute"},
    };
    for (const Case& c : cases) {
        INFO("records: " << c.records);
        Parsed parsed(c.records);
        CHECK(parsed.result == -1);
        CHECK_THAT(parsed.error, Contains(c.error));
        // A refused config is freed and cleared: nothing half-parsed is left.
        CHECK(parsed.config.cmd == nullptr);
        CHECK(parsed.config.env == nullptr);
    }
}

TEST_CASE("exec config: the parser takes records in any order, and repeats env and share") {
    using namespace std::string_literals;
    Parsed parsed("env=B=2\0share=a:0:/a\0root_writable=0\0cmd=x\0env=A=1\0share=b:1:/b:c\0groups=5\0"s);
    REQUIRE(parsed.result == 0);
    CHECK(env_of(parsed.config) == std::vector<std::string>{"B=2", "A=1"});
    REQUIRE(parsed.config.nshares == 2);
    CHECK(std::string(parsed.config.shares[1].path) == "/b:c");
    REQUIRE(parsed.config.ngroups == 1);
    CHECK(parsed.config.groups[0] == 5);
    CHECK(std::string(parsed.config.tty) == "/dev/console");  // the default without a tty record
    CHECK(parsed.config.stderr_tty == nullptr);  // stderr with stdout on the tty
}

TEST_CASE("exec initramfs: the archive holds the directories, the console, the init and its config") {
    const ExecSpec spec = full_spec();
    const std::vector<uint8_t> init = {0x7f, 'E', 'L', 'F', 1, 2, 3, 4, 5};
    const auto entries = newc_reader::read(build_exec_initramfs(spec, init));
    REQUIRE(entries.size() == 9);
    const char* const dirs[] = {"dev", "proc", "sys", "mnt", "minikvm"};
    for (size_t i = 0; i < 5; ++i) {
        CHECK(entries[i].name == dirs[i]);
        CHECK(entries[i].mode == (S_IFDIR | 0755));
    }
    // After dev: the kernel creates entries in archive order.
    CHECK(entries[5].name == "dev/console");
    CHECK(entries[5].mode == (S_IFCHR | 0600));
    CHECK(entries[5].rdevmajor == 5);
    CHECK(entries[5].rdevminor == 1);
    CHECK(entries[6].name == "init");
    CHECK(entries[6].mode == (S_IFREG | 0755));
    CHECK(entries[6].data == init);
    CHECK(entries[7].name == "minikvm/exec");
    CHECK(entries[7].mode == (S_IFREG | 0644));
    CHECK(entries[7].data == serialize_exec_spec(spec));
    CHECK(entries[8].name == "TRAILER!!!");
}

TEST_CASE("exec initramfs: a spec that cannot be serialized builds no archive") {
    ExecSpec spec = full_spec();
    spec.cwd = "relative";
    const std::vector<uint8_t> init = {1};
    CHECK_THROWS_AS(build_exec_initramfs(spec, init), VmmError);
    CHECK_THROWS_AS(build_exec_initramfs(full_spec(), {}), std::invalid_argument);
}

TEST_CASE("exec init: the embedded binary is the static x86-64 executable the build made") {
    const std::span<const uint8_t> image = exec_init_binary();
    std::ifstream file(MINIKVM_EXEC_INIT_BINARY, std::ios::binary);
    REQUIRE(file);
    const std::vector<uint8_t> built((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    REQUIRE(!built.empty());
    CHECK(std::vector<uint8_t>(image.begin(), image.end()) == built);

    REQUIRE(image.size() > sizeof(Elf64_Ehdr));
    Elf64_Ehdr header;
    std::memcpy(&header, image.data(), sizeof(header));
    CHECK(std::memcmp(header.e_ident, ELFMAG, SELFMAG) == 0);
    CHECK(header.e_ident[EI_CLASS] == ELFCLASS64);
    CHECK(header.e_machine == EM_X86_64);
    // Static: no program interpreter (the initramfs has no ld.so), and not
    // built with -fsanitize (no runtime could start in the guest).
    REQUIRE(header.e_phoff + uint64_t{header.e_phnum} * sizeof(Elf64_Phdr) <= image.size());
    for (size_t i = 0; i < header.e_phnum; ++i) {
        Elf64_Phdr program;
        std::memcpy(&program, image.data() + header.e_phoff + i * sizeof(Elf64_Phdr), sizeof(program));
        CHECK(program.p_type != PT_INTERP);
    }
    const std::string text(image.begin(), image.end());
    CHECK(text.find("AddressSanitizer") == std::string::npos);
    CHECK(text.find("minikvm-init: ") != std::string::npos);
}
