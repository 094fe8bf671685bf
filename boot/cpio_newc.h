#pragma once
// A writer of cpio archives in the "newc" format (magic 070701), the format
// the Linux kernel unpacks as an initramfs (Documentation/driver-api/
// early-userspace/buffer-format.rst). Uncompressed; every header is 110
// ASCII bytes of eight-digit hex fields, the name follows with its NUL and
// is padded so the data starts on a 4-byte boundary, and the data is padded
// to 4 bytes too. Entries are owned by root with mtime 0, so the same input
// gives the same bytes.

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace minikvm {

class CpioNewcWriter {
public:
    static constexpr std::string_view kMagic = "070701";
    static constexpr std::string_view kTrailerName = "TRAILER!!!";
    static constexpr size_t kHeaderSize = 110;
    // The kernel's unpacker refuses longer names (PATH_MAX, with the NUL).
    static constexpr size_t kMaxNameLength = 4095;

    // `name` is a path inside the archive, without a leading '/' by
    // convention ("dev/console"); `permissions` are the low 12 mode bits
    // (the writer adds the file type). Parents must be added before their
    // children: the kernel creates entries in archive order. Names that are
    // empty, hold a NUL, are too long or are "TRAILER!!!" throw
    // std::invalid_argument; so do permissions beyond 07777 and adding after
    // finish().
    void add_directory(std::string_view name, uint32_t permissions);
    // Throws std::length_error beyond 4 GiB - 1 (a 32-bit size field).
    void add_file(std::string_view name, uint32_t permissions, std::span<const uint8_t> data);
    void add_char_device(std::string_view name, uint32_t permissions, uint32_t major, uint32_t minor);

    // Appends the TRAILER!!! entry and returns the archive; the writer is
    // finished then (a second finish() throws std::invalid_argument).
    std::vector<uint8_t> finish();

private:
    struct Header {
        uint32_t mode = 0;
        uint32_t nlink = 1;
        uint32_t filesize = 0;
        uint32_t rdevmajor = 0;
        uint32_t rdevminor = 0;
    };
    void add_entry(std::string_view name, const Header& header, std::span<const uint8_t> data);
    void write_entry(std::string_view name, uint32_t inode, const Header& header, std::span<const uint8_t> data);
    void pad_to_4();

    std::vector<uint8_t> out_;
    uint32_t next_inode_ = 1;  // unique per entry: the kernel links equal (ino, dev) pairs
    bool finished_ = false;
};

}  // namespace minikvm
