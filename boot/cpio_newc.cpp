#include "boot/cpio_newc.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <stdexcept>
#include <string>

namespace minikvm {

namespace {

void check_name(std::string_view name) {
    if (name.empty()) throw std::invalid_argument("cpio: empty name");
    // The kernel stops unpacking at this name.
    if (name == CpioNewcWriter::kTrailerName) throw std::invalid_argument("cpio: TRAILER!!! ends the archive");
    if (name.find('\0') != std::string_view::npos) throw std::invalid_argument("cpio: name holds a NUL byte");
    if (name.size() > CpioNewcWriter::kMaxNameLength)
        throw std::invalid_argument(fmt::format("cpio: name longer than {} bytes", CpioNewcWriter::kMaxNameLength));
}

uint32_t checked_permissions(uint32_t permissions) {
    if (permissions & ~07777U) throw std::invalid_argument(fmt::format("cpio: permissions {:o} beyond 07777", permissions));
    return permissions;
}

}  // namespace

void CpioNewcWriter::add_directory(std::string_view name, uint32_t permissions) {
    // nlink 2: "." and the entry in its parent, as cpio(1) writes it.
    add_entry(name, Header{.mode = S_IFDIR | checked_permissions(permissions), .nlink = 2}, {});
}

void CpioNewcWriter::add_file(std::string_view name, uint32_t permissions, std::span<const uint8_t> data) {
    if (data.size() > UINT32_MAX) throw std::length_error("cpio: a newc file holds at most 4 GiB - 1");
    add_entry(name,
              Header{.mode = S_IFREG | checked_permissions(permissions), .filesize = static_cast<uint32_t>(data.size())},
              data);
}

void CpioNewcWriter::add_char_device(std::string_view name, uint32_t permissions, uint32_t major, uint32_t minor) {
    add_entry(name,
              Header{.mode = S_IFCHR | checked_permissions(permissions), .rdevmajor = major, .rdevminor = minor}, {});
}

std::vector<uint8_t> CpioNewcWriter::finish() {
    if (finished_) throw std::invalid_argument("cpio: finish() called twice");
    // The trailer is an ordinary entry with nlink 1 and nothing else set
    // (inode 0 too, as cpio(1) writes it).
    write_entry(kTrailerName, 0, Header{}, {});
    finished_ = true;
    return std::move(out_);
}

void CpioNewcWriter::add_entry(std::string_view name, const Header& header, std::span<const uint8_t> data) {
    if (finished_) throw std::invalid_argument("cpio: entry added after finish()");
    check_name(name);
    write_entry(name, next_inode_++, header, data);
}

void CpioNewcWriter::write_entry(std::string_view name, uint32_t inode, const Header& header,
                                 std::span<const uint8_t> data) {
    // c_ino, c_mode, c_uid, c_gid, c_nlink, c_mtime, c_filesize, c_devmajor,
    // c_devminor, c_rdevmajor, c_rdevminor, c_namesize (with the NUL), c_check
    // (0: the checksum is only for the "070702" variant).
    const std::string text = fmt::format("{}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
                                         kMagic, inode, header.mode, 0, 0, header.nlink, 0, header.filesize, 0, 0,
                                         header.rdevmajor, header.rdevminor, name.size() + 1, 0);
    out_.insert(out_.end(), text.begin(), text.end());
    out_.insert(out_.end(), name.begin(), name.end());
    out_.push_back(0);
    pad_to_4();
    out_.insert(out_.end(), data.begin(), data.end());
    pad_to_4();
}

void CpioNewcWriter::pad_to_4() {
    // The archive starts at offset 0, so aligning its size aligns the offset.
    while (out_.size() % 4 != 0) out_.push_back(0);
}

}  // namespace minikvm
