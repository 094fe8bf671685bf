#pragma once
// A strict reader of cpio "newc" archives for tests, written from the format
// (Documentation/driver-api/early-userspace/buffer-format.rst) rather than
// from boot/cpio_newc.cpp: 110-byte headers of "070701" and thirteen 8-digit
// hex fields, each header on a 4-byte boundary, the name with its NUL padded
// to 4, the data padded to 4, padding all zero, TRAILER!!! last and nothing
// after it. Anything else throws std::runtime_error.

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace newc_reader {

struct Entry {
    size_t offset = 0;  // of the header, in the archive
    uint32_t ino = 0, mode = 0, uid = 0, gid = 0, nlink = 0, mtime = 0;
    uint32_t devmajor = 0, devminor = 0, rdevmajor = 0, rdevminor = 0, check = 0;
    std::string name;
    std::vector<uint8_t> data;
};

inline uint32_t hex_field(std::span<const uint8_t> archive, size_t at) {
    uint32_t value = 0;
    for (size_t i = 0; i < 8; ++i) {
        const char c = static_cast<char>(archive[at + i]);
        uint32_t digit;
        if (c >= '0' && c <= '9')
            digit = static_cast<uint32_t>(c - '0');
        else if (c >= 'A' && c <= 'F')
            digit = static_cast<uint32_t>(c - 'A' + 10);
        else if (c >= 'a' && c <= 'f')
            digit = static_cast<uint32_t>(c - 'a' + 10);
        else
            throw std::runtime_error("newc: non-hex character in a header field at " + std::to_string(at + i));
        value = value << 4 | digit;
    }
    return value;
}

// Skips zero padding up to the next multiple of 4.
inline void skip_padding(std::span<const uint8_t> archive, size_t& at) {
    while (at % 4 != 0) {
        if (at >= archive.size()) throw std::runtime_error("newc: archive ends inside padding");
        if (archive[at] != 0) throw std::runtime_error("newc: non-zero padding at " + std::to_string(at));
        ++at;
    }
}

// Every entry, the trailer included (last).
inline std::vector<Entry> read(std::span<const uint8_t> archive) {
    std::vector<Entry> entries;
    size_t at = 0;
    for (;;) {
        if (at % 4 != 0) throw std::runtime_error("newc: header not 4-byte aligned");
        if (archive.size() - at < 110) throw std::runtime_error("newc: archive ends without TRAILER!!!");
        if (std::string_view(reinterpret_cast<const char*>(archive.data() + at), 6) != "070701")
            throw std::runtime_error("newc: bad magic at " + std::to_string(at));
        Entry e;
        e.offset = at;
        uint32_t* fields[] = {&e.ino,    &e.mode,     &e.uid,      &e.gid,       &e.nlink,     &e.mtime,
                              nullptr,   &e.devmajor, &e.devminor, &e.rdevmajor, &e.rdevminor, nullptr,
                              &e.check};
        uint32_t filesize = 0, namesize = 0;
        for (size_t i = 0; i < 13; ++i) {
            const uint32_t value = hex_field(archive, at + 6 + 8 * i);
            if (i == 6)
                filesize = value;
            else if (i == 11)
                namesize = value;
            else
                *fields[i] = value;
        }
        at += 110;
        if (namesize == 0 || archive.size() - at < namesize) throw std::runtime_error("newc: bad namesize");
        if (archive[at + namesize - 1] != 0) throw std::runtime_error("newc: name without its NUL");
        e.name.assign(reinterpret_cast<const char*>(archive.data() + at), namesize - 1);
        if (e.name.find('\0') != std::string::npos) throw std::runtime_error("newc: NUL inside a name");
        at += namesize;
        skip_padding(archive, at);
        if (archive.size() - at < filesize) throw std::runtime_error("newc: data runs past the archive");
        e.data.assign(archive.begin() + static_cast<std::ptrdiff_t>(at),
                      archive.begin() + static_cast<std::ptrdiff_t>(at + filesize));
        at += filesize;
        skip_padding(archive, at);
        const bool trailer = e.name == "TRAILER!!!";
        entries.push_back(std::move(e));
        if (trailer) break;
    }
    if (at != archive.size()) throw std::runtime_error("newc: bytes after TRAILER!!!");
    return entries;
}

}  // namespace newc_reader
