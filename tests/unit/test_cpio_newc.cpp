// CpioNewcWriter: archives read back by a separate strict reader
// (newc_reader.h), one header checked byte for byte against the format, and
// every way the writer refuses an entry.

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "boot/cpio_newc.h"
#include "newc_reader.h"

using namespace minikvm;

namespace {

std::vector<uint8_t> bytes(std::string_view text) { return std::vector<uint8_t>(text.begin(), text.end()); }

}  // namespace

TEST_CASE("cpio newc: directories, files and device nodes read back as written") {
    CpioNewcWriter cpio;
    cpio.add_directory("dev", 0755);
    cpio.add_char_device("dev/console", 0600, 5, 1);
    const std::vector<uint8_t> script = bytes("#!/bin/sh\necho hello\n");
    cpio.add_file("init", 04755, script);
    cpio.add_file("empty", 0644, {});
    const std::vector<uint8_t> archive = cpio.finish();

    const std::vector<newc_reader::Entry> entries = newc_reader::read(archive);
    REQUIRE(entries.size() == 5);
    CHECK(entries[0].name == "dev");
    CHECK(entries[0].mode == (S_IFDIR | 0755));
    CHECK(entries[0].nlink == 2);
    CHECK(entries[0].data.empty());
    CHECK(entries[1].name == "dev/console");
    CHECK(entries[1].mode == (S_IFCHR | 0600));
    CHECK(entries[1].rdevmajor == 5);
    CHECK(entries[1].rdevminor == 1);
    CHECK(entries[1].data.empty());
    CHECK(entries[2].name == "init");
    CHECK(entries[2].mode == (S_IFREG | 04755));
    CHECK(entries[2].nlink == 1);
    CHECK(entries[2].data == script);
    CHECK(entries[3].name == "empty");
    CHECK(entries[3].mode == (S_IFREG | 0644));
    CHECK(entries[3].data.empty());
    CHECK(entries[4].name == "TRAILER!!!");
    CHECK(entries[4].mode == 0);
    CHECK(entries[4].ino == 0);
    CHECK(entries[4].nlink == 1);

    // Owned by root, mtime 0 (reproducible), no device of origin, no
    // checksum; inodes unique, so the kernel links nothing together.
    std::set<uint32_t> inodes;
    for (const auto& e : entries) {
        CHECK(e.uid == 0);
        CHECK(e.gid == 0);
        CHECK(e.mtime == 0);
        CHECK(e.devmajor == 0);
        CHECK(e.devminor == 0);
        CHECK(e.check == 0);
        if (e.name != "TRAILER!!!") {
            CHECK(e.ino != 0);
            inodes.insert(e.ino);
        }
    }
    CHECK(inodes.size() == 4);
}

TEST_CASE("cpio newc: one header, byte for byte") {
    CpioNewcWriter cpio;
    cpio.add_file("ab", 0755, bytes("xyz"));
    const std::vector<uint8_t> archive = cpio.finish();
    const std::string expected_entry = std::string("070701") +
                                       "00000001"  // c_ino
                                       "000081ED"  // c_mode: S_IFREG | 0755
                                       "00000000"  // c_uid
                                       "00000000"  // c_gid
                                       "00000001"  // c_nlink
                                       "00000000"  // c_mtime
                                       "00000003"  // c_filesize
                                       "00000000"  // c_devmajor
                                       "00000000"  // c_devminor
                                       "00000000"  // c_rdevmajor
                                       "00000000"  // c_rdevminor
                                       "00000003"  // c_namesize: "ab" and its NUL
                                       "00000000"  // c_check
                                       + std::string("ab\0", 3) + std::string(3, '\0')  // 110 + 3 -> 116
                                       + "xyz" + std::string(1, '\0');                   // 116 + 3 -> 120
    REQUIRE(archive.size() >= expected_entry.size());
    CHECK(std::string(archive.begin(), archive.begin() + static_cast<std::ptrdiff_t>(expected_entry.size())) ==
          expected_entry);
    // The trailer: 110 + "TRAILER!!!\0" (11) = 121, padded to 124.
    CHECK(archive.size() == expected_entry.size() + 124);
    CHECK(std::string(archive.begin() + 120 + 110, archive.begin() + 120 + 121) == std::string("TRAILER!!!\0", 11));
}

TEST_CASE("cpio newc: names and data of every length stay 4-byte aligned") {
    for (size_t name_length = 1; name_length <= 9; ++name_length) {
        for (size_t data_length = 0; data_length <= 9; ++data_length) {
            CpioNewcWriter cpio;
            const std::string name(name_length, 'n');
            std::vector<uint8_t> data(data_length);
            for (size_t i = 0; i < data_length; ++i) data[i] = static_cast<uint8_t>(0xa0 + i);
            cpio.add_file(name, 0644, data);
            cpio.add_directory("d", 0700);
            const std::vector<uint8_t> archive = cpio.finish();
            INFO("name " << name_length << " bytes, data " << data_length << " bytes");
            CHECK(archive.size() % 4 == 0);
            // The reader checks header alignment and zero padding itself.
            const auto entries = newc_reader::read(archive);
            REQUIRE(entries.size() == 3);
            CHECK(entries[0].name == name);
            CHECK(entries[0].data == data);
            // Where the data starts: header + name + NUL, rounded up to 4.
            const size_t data_at = (110 + name_length + 1 + 3) / 4 * 4;
            CHECK(std::vector<uint8_t>(archive.begin() + static_cast<std::ptrdiff_t>(data_at),
                                       archive.begin() + static_cast<std::ptrdiff_t>(data_at + data_length)) == data);
            CHECK(entries[1].offset == (data_at + data_length + 3) / 4 * 4);
            CHECK(entries[1].name == "d");
            CHECK(entries[1].mode == (S_IFDIR | 0700));
        }
    }
}

TEST_CASE("cpio newc: an empty archive is just the trailer") {
    CpioNewcWriter cpio;
    const auto entries = newc_reader::read(cpio.finish());
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].name == "TRAILER!!!");
}

TEST_CASE("cpio newc: names, permissions and order the format cannot take are refused") {
    CpioNewcWriter cpio;
    CHECK_THROWS_AS(cpio.add_directory("", 0755), std::invalid_argument);
    CHECK_THROWS_AS(cpio.add_file(std::string("a\0b", 3), 0644, {}), std::invalid_argument);
    // The kernel would stop unpacking at a second trailer.
    CHECK_THROWS_AS(cpio.add_file("TRAILER!!!", 0644, {}), std::invalid_argument);
    CHECK_THROWS_AS(cpio.add_directory(std::string(CpioNewcWriter::kMaxNameLength + 1, 'x'), 0755),
                    std::invalid_argument);
    CHECK_NOTHROW(cpio.add_directory(std::string(CpioNewcWriter::kMaxNameLength, 'x'), 0755));
    // The file type comes from the call, not from the permissions.
    CHECK_THROWS_AS(cpio.add_file("f", S_IFDIR | 0755, {}), std::invalid_argument);
    CHECK_THROWS_AS(cpio.add_char_device("c", 010000, 1, 3), std::invalid_argument);

    // Refused entries left nothing behind: the archive holds the one good
    // entry and inode numbers did not skip.
    const auto entries = newc_reader::read(cpio.finish());
    REQUIRE(entries.size() == 2);
    CHECK(entries[0].name.size() == CpioNewcWriter::kMaxNameLength);
    CHECK(entries[0].ino == 1);

    CHECK_THROWS_AS(cpio.add_file("late", 0644, {}), std::invalid_argument);
    CHECK_THROWS_AS(cpio.finish(), std::invalid_argument);
}
