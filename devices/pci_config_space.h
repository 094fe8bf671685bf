#pragma once
// The 256-byte configuration space of one PCI function with a type-0 header
// (an endpoint, not a bridge). Every byte has a write mask, so "read-only"
// and "writable" are data, not code: a guest write changes only the bits its
// mask allows, and the status register's error bits clear when written with 1.
// BARs follow the sizing protocol because their low address bits are simply
// not writable: writing all-ones reads back the size mask plus the type bits.
// A 64-bit memory BAR takes two registers, the upper one holding address
// bits 63:32; sizing each in turn gives the 64-bit size mask.
//
// The guest reaches this through the host bridge (config mechanism #1); the
// device model and the bridge use the owner-side API below. An internal mutex
// makes each call atomic, so a device thread may flip its interrupt status
// while a vCPU reads the status register.

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace minikvm {

// What the device is; all of it is read-only to the guest.
struct PciIdentity {
    uint16_t vendor_id = 0xffff;
    uint16_t device_id = 0xffff;
    uint32_t class_code = 0;  // base class << 16 | subclass << 8 | programming interface
    uint8_t revision = 0;
    uint16_t subsystem_vendor_id = 0;
    uint16_t subsystem_id = 0;
};

// Memory64 takes the register after its own for the address's upper half.
enum class PciBarKind { Io, Memory32, Memory64 };
// "I/O", "32-bit memory", "64-bit memory": for messages.
const char* to_string(PciBarKind kind);
// "io", "mem", "mem64": for trace lines.
const char* trace_name(PciBarKind kind);

// What a guest write changed that the owner may have to act on. Returned by
// write() rather than signalled through a callback, so the owner reacts after
// the write, under its own lock, with no re-entrancy into this object.
struct PciConfigChanges {
    uint8_t moved_bars = 0;  // bit i: BAR i's programmed address changed (a 64-bit BAR: its lower index)
    bool io_enable_changed = false;
    bool memory_enable_changed = false;
    bool intx_disable_changed = false;

    // True when some BAR may now decode somewhere else, or nowhere.
    bool decoding_may_have_changed() const { return moved_bars != 0 || io_enable_changed || memory_enable_changed; }
};

class PciConfigSpace {
public:
    static constexpr uint32_t kSize = 256;
    static constexpr unsigned kBarCount = 6;

    // Register offsets of the type-0 header.
    static constexpr uint32_t kVendorId = 0x00;
    static constexpr uint32_t kDeviceId = 0x02;
    static constexpr uint32_t kCommand = 0x04;
    static constexpr uint32_t kStatus = 0x06;
    static constexpr uint32_t kRevision = 0x08;
    static constexpr uint32_t kClassCode = 0x09;  // 3 bytes: programming interface, subclass, base class
    static constexpr uint32_t kCacheLineSize = 0x0c;
    static constexpr uint32_t kHeaderType = 0x0e;
    static constexpr uint32_t kBar0 = 0x10;
    static constexpr uint32_t kSubsystemVendorId = 0x2c;
    static constexpr uint32_t kSubsystemId = 0x2e;
    static constexpr uint32_t kCapabilitiesPointer = 0x34;
    static constexpr uint32_t kInterruptLine = 0x3c;
    static constexpr uint32_t kInterruptPin = 0x3d;
    static constexpr uint32_t kFirstCapability = 0x40;  // the device-specific area starts here

    // Command register bits the guest may set; all others read 0.
    static constexpr uint16_t kCommandIoEnable = 0x0001;
    static constexpr uint16_t kCommandMemoryEnable = 0x0002;
    static constexpr uint16_t kCommandBusMaster = 0x0004;
    static constexpr uint16_t kCommandIntxDisable = 0x0400;

    // Status register bits.
    static constexpr uint16_t kStatusInterrupt = 0x0008;         // INTx asserted (device-set, read-only)
    static constexpr uint16_t kStatusCapabilitiesList = 0x0010;  // read-only, set by add_capability()
    // Error bits: set by the device, cleared by the guest writing 1 to them.
    static constexpr uint16_t kStatusWriteOneToClear = 0xf900;

    // BAR limits: I/O BARs are at most 256 bytes (PCI Local Bus spec), and the
    // smallest sizes keep the type bits out of the address. A 32-bit memory
    // BAR needs one address bit; a 64-bit one may be up to 2^63 bytes.
    static constexpr uint32_t kMinIoBarSize = 4;
    static constexpr uint32_t kMaxIoBarSize = 256;
    static constexpr uint32_t kMinMemoryBarSize = 16;
    static constexpr uint64_t kMaxMemory32BarSize = uint64_t{1} << 31;

    explicit PciConfigSpace(const PciIdentity& identity);

    PciConfigSpace(const PciConfigSpace&) = delete;
    PciConfigSpace& operator=(const PciConfigSpace&) = delete;

    // --- Guest side: any length at any offset; bytes past 255 read 0xff and
    // ignore writes. Registers are little-endian, so an access that spans
    // two registers simply touches bytes of both.
    void read(uint32_t offset, std::span<uint8_t> data) const;
    PciConfigChanges write(uint32_t offset, std::span<const uint8_t> data);

    // --- Owner side: not subject to the guest's write masks.

    // Makes BAR `index` (0-5) implemented; a Memory64 BAR also takes
    // register index + 1 for its upper half, so its index is at most 4.
    // Size: a power of two, 4..256 for I/O, 16..2 GiB for Memory32,
    // 16..2^63 for Memory64. `prefetchable` sets bit 3 of a memory BAR.
    // Throws std::invalid_argument otherwise (an I/O BAR cannot be
    // prefetchable), or when a register it needs is declared already.
    void declare_bar(unsigned index, PciBarKind kind, uint64_t size, bool prefetchable = false);
    // Firmware-style assignment; `address` must be aligned to the BAR's size
    // and, for I/O, inside the 64 KiB port space; for Memory32, below 4 GiB.
    void set_bar_address(unsigned index, uint64_t address);
    // The address the guest programmed, whether or not decoding is enabled;
    // both registers of a 64-bit BAR.
    uint64_t bar_address(unsigned index) const;
    // Where the BAR decodes now: declared, its kind enabled in the command
    // register, and a usable address: not 0; I/O inside the 64 KiB port
    // space; 32-bit memory ending below 4 GiB, since all-ones is the sizing
    // pattern and is never decoded, as in QEMU; 64-bit memory with neither
    // register's address bits all set, for the same reason (which also keeps
    // its last byte below 2^64 - 1). nullopt when it decodes nowhere.
    std::optional<uint64_t> bar_decode_address(unsigned index) const;
    // What BAR `index` was declared as; nullopt for a register that holds no
    // BAR of its own (undeclared, or the upper half of a 64-bit BAR).
    std::optional<PciBarKind> bar_kind(unsigned index) const;
    // Its size; 0 where bar_kind() is nullopt.
    uint64_t bar_size(unsigned index) const;

    uint16_t command() const;
    uint16_t status() const;
    bool intx_disabled() const { return (command() & kCommandIntxDisable) != 0; }

    // 0 = no interrupt, 1..4 = INTA#..INTD#.
    void set_interrupt_pin(uint8_t pin);
    void set_interrupt_line(uint8_t line);

    // The device reports its INTx level here (status bit 3) and error
    // conditions (bits of kStatusWriteOneToClear) for the guest to clear.
    void set_interrupt_status(bool asserted);
    void set_status_error(uint16_t bits);

    // Appends a capability to the list (ID and next pointer are filled in and
    // read-only) and returns its offset. `body` is what follows the 2-byte
    // header; `writable`, if given, is its per-byte write mask (same size).
    // Capabilities are dword-aligned from 0x40; throws std::length_error when
    // there is no room, std::invalid_argument on a mask of the wrong size.
    uint8_t add_capability(uint8_t id, std::span<const uint8_t> body, std::span<const uint8_t> writable = {});
    // The same at a given offset (an assigned device keeps its capabilities
    // where the hardware has them): dword-aligned, from 0x40, inside the
    // 256 bytes and clear of every capability already added
    // (std::invalid_argument otherwise). Linked at the list's tail.
    void add_capability_at(uint8_t offset, uint8_t id, std::span<const uint8_t> body,
                           std::span<const uint8_t> writable = {});

private:
    struct Bar {
        PciBarKind kind = PciBarKind::Io;
        uint64_t size = 0;  // 0: no BAR of its own in this slot
        bool prefetchable = false;
        bool upper_half = false;  // the previous slot's 64-bit BAR owns this register
    };

    uint64_t bar_address_locked(unsigned index) const;
    std::optional<uint64_t> bar_decode_address_locked(unsigned index) const;
    uint16_t get16(uint32_t offset) const;
    uint32_t get32(uint32_t offset) const;
    void set16(uint32_t offset, uint16_t value);
    void set32(uint32_t offset, uint32_t value);
    void set_write_mask32(uint32_t offset, uint32_t mask);

    mutable std::mutex mutex_;
    std::array<uint8_t, kSize> bytes_{};
    std::array<uint8_t, kSize> writable_{};        // bits a guest write may change
    std::array<uint8_t, kSize> write_one_clear_{};  // bits a guest write of 1 clears
    std::array<Bar, kBarCount> bars_{};
    // With mutex_ held: writes and links a checked capability at `at`.
    void place_capability_locked(uint32_t at, uint8_t id, std::span<const uint8_t> body,
                                 std::span<const uint8_t> writable);

    uint32_t next_capability_ = kFirstCapability;  // where the next capability goes
    uint8_t last_capability_ = 0;                  // offset of the list's tail, 0 if empty
    std::vector<std::pair<uint32_t, uint32_t>> capability_ends_;  // (offset, end) of each capability
};

}  // namespace minikvm
