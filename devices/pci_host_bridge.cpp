#include "devices/pci_host_bridge.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace minikvm {

namespace {

// CONFIG_ADDRESS fields.
constexpr uint32_t kEnableBit = 1u << 31;
// Bits 30:24 and 1:0 are reserved and read as 0, as on Intel chipsets.
constexpr uint32_t kConfigAddressMask = kEnableBit | 0x00ff'fffc;
constexpr uint64_t kDataWindowOffset = 4;  // 0xcfc - 0xcf8

constexpr uint8_t kPinIntA = 1;  // interrupt pin register value for INTA#

unsigned bus_of(uint32_t address) { return (address >> 16) & 0xff; }
unsigned device_of(uint32_t address) { return (address >> 11) & 0x1f; }
unsigned function_of(uint32_t address) { return (address >> 8) & 0x7; }
uint32_t register_of(uint32_t address) { return address & 0xfc; }

// "16 KiB", "8 GiB", "1.5 MiB": sizes for people.
std::string size_text(uint64_t bytes) {
    static constexpr const char* kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    unsigned unit = 0;
    while (unit + 1 < std::size(kUnits) && bytes >> (10 * (unit + 1)) != 0) ++unit;
    const uint64_t scale = uint64_t{1} << (10 * unit);
    if (bytes % scale == 0) return fmt::format("{} {}", bytes / scale, kUnits[unit]);
    return fmt::format("{:.1f} {}", static_cast<double>(bytes) / static_cast<double>(scale), kUnits[unit]);
}

// Takes `size` bytes (a power of two), aligned to `size`, from [next, end)
// and advances next; nullopt when they do not fit.
std::optional<uint64_t> allocate(uint64_t& next, uint64_t end, uint64_t size) {
    const uint64_t base = (next + size - 1) & ~(size - 1);
    if (base < next || base > end || end - base < size) return std::nullopt;  // base < next: the rounding wrapped
    next = base + size;
    return base;
}

// "the 64-bit window is 4 GiB (0x1000000000-0x10ffffffff), 1 GiB of it free"
std::string window_text(const char* name, uint64_t start, uint64_t next, uint64_t end) {
    return fmt::format("the {} window is {} ({:#x}-{:#x}), {}", name, size_text(end - start), start, end - 1,
                       next >= end ? "all of it taken" : size_text(end - next) + " of it free");
}

}  // namespace

// A device's INTA#. What the device asserts shows in the status register;
// what reaches the IOAPIC is also gated by the command register's
// INTx-disable bit, which the guest may flip while the line is asserted.
class PciHostBridge::IntxLine : public IrqLine {
public:
    IntxLine(PciConfigSpace& config, std::unique_ptr<IrqLine> output)
        : config_(config), output_(std::move(output)) {}

    void set_level(bool asserted) override {
        std::lock_guard lock(mutex_);
        asserted_ = asserted;
        config_.set_interrupt_status(asserted);
        update();
    }

    std::optional<uint32_t> gsi() const override { return output_->gsi(); }

    // After the guest changed INTx-disable.
    void refresh() {
        std::lock_guard lock(mutex_);
        update();
    }

private:
    void update() {
        const bool level = asserted_ && !config_.intx_disabled();
        if (level == driven_) return;
        driven_ = level;
        output_->set_level(level);
    }

    PciConfigSpace& config_;
    std::unique_ptr<IrqLine> output_;
    std::mutex mutex_;
    bool asserted_ = false;  // by the device
    bool driven_ = false;    // towards the IOAPIC
};

PciHostBridge::PciHostBridge(IoBus& io_bus, MmioBus& mmio_bus, IrqLineFactory make_irq_line, Memory64Window window)
    : io_bus_(io_bus),
      mmio_bus_(mmio_bus),
      make_irq_line_(std::move(make_irq_line)),
      memory64_window_(window),
      next_address_{kIoWindowStart, kMemoryWindowStart, window.start} {
    if (window.end < window.start || (!window.empty() && window.start < GuestMemory::kMmioHoleEnd))
        throw std::invalid_argument(
            fmt::format("PCI: 64-bit window {:#x}-{:#x} is not a range above 4 GiB", window.start, window.end));
}

PciHostBridge::Memory64Window PciHostBridge::memory64_window_above(uint64_t ram_end, unsigned physical_bits) {
    constexpr uint64_t kAlignment = 1ull << 30;  // keeps large BARs' natural alignment from wasting the start
    constexpr uint64_t kSize = 64ull << 30;
    const uint64_t floor = std::max<uint64_t>(ram_end, GuestMemory::kMmioHoleEnd);
    if (floor > ~uint64_t{0} - kAlignment || physical_bits >= 64) return {};
    const uint64_t start = (floor + kAlignment - 1) & ~(kAlignment - 1);
    const uint64_t end = std::min(start + kSize, uint64_t{1} << physical_bits);
    if (end <= start) return {};
    return {start, end};
}

PciHostBridge::~PciHostBridge() {
    std::lock_guard lock(mutex_);
    for (size_t number = 0; number < slots_.size(); ++number)
        for (MappedBar& mapped : slots_[number].bars)
            unmap(static_cast<uint8_t>(number), mapped, nullptr);  // devices may be gone already
}

PciBdf PciHostBridge::register_device(PciDevice& device) {
    std::lock_guard lock(mutex_);
    for (const Slot& slot : slots_)
        if (slot.device == &device) throw std::invalid_argument("PCI device registered twice");
    if (slots_used_ >= slots_.size()) throw std::runtime_error("PCI bus 0 has no free slot");
    const size_t device_index = slots_used_ - 1u;  // devices take GSIs in slot order
    if (device_index >= kInterruptGsis.size())
        throw std::runtime_error(fmt::format("PCI: no free interrupt line (at most {} devices)", kInterruptGsis.size()));

    const auto number = static_cast<uint8_t>(slots_used_);
    const PciBdf bdf{0, number, 0};
    PciConfigSpace& config = device.config();
    Slot slot;
    slot.device = &device;
    slot.gsi = kInterruptGsis[device_index];

    // Place the BARs on a copy of the window cursors, so a failure leaves
    // the bridge as it was.
    WindowCursors next = next_address_;
    for (const PciBar& bar : device.bars()) {
        config.declare_bar(bar.index, bar.kind, bar.size, bar.prefetchable);
        const uint64_t address = allocate_bar(bar, next);
        config.set_bar_address(bar.index, address);
        slot.bars.push_back(MappedBar{bar, std::nullopt, false});
        spdlog::debug("PCI {} BAR{}: {}{} {:#x}+{:#x}", bdf.to_string(), bar.index, to_string(bar.kind),
                      bar.prefetchable ? " prefetchable" : "", address, bar.size);
    }
    config.set_interrupt_pin(kPinIntA);
    config.set_interrupt_line(slot.gsi);
    std::unique_ptr<IrqLine> output = make_irq_line_(slot.gsi);
    if (!output) throw std::invalid_argument(fmt::format("PCI: no interrupt line for GSI {}", slot.gsi));
    slot.intx = std::make_unique<IntxLine>(config, std::move(output));

    next_address_ = next;
    slots_[number] = std::move(slot);
    ++slots_used_;
    // Maps nothing after a reset (decoding is off); only a command register
    // written before registration would map something here.
    update_bar_mappings(number, slots_[number]);
    device.pci_address_assigned(bdf);
    device.connect_intx(*slots_[number].intx);
    return bdf;
}

uint64_t PciHostBridge::allocate_bar(const PciBar& bar, WindowCursors& next) const {
    std::string windows;  // why it does not fit
    switch (bar.kind) {
    case PciBarKind::Io:
        if (auto base = allocate(next.io, kIoWindowEnd, bar.size)) return *base;
        windows = window_text("I/O", kIoWindowStart, next.io, kIoWindowEnd);
        break;
    case PciBarKind::Memory32:
        if (auto base = allocate(next.memory, kMemoryWindowEnd, bar.size)) return *base;
        windows = window_text("32-bit", kMemoryWindowStart, next.memory, kMemoryWindowEnd);
        break;
    case PciBarKind::Memory64: {
        const bool small = bar.size < kMemory64InLowWindowBelow;
        if (small)
            if (auto base = allocate(next.memory, kMemoryWindowEnd, bar.size)) return *base;
        if (auto base = allocate(next.memory64, memory64_window_.end, bar.size)) return *base;
        windows = memory64_window_.empty()
                      ? std::string("there is no 64-bit window")
                      : window_text("64-bit", memory64_window_.start, next.memory64, memory64_window_.end);
        windows = small ? window_text("32-bit", kMemoryWindowStart, next.memory, kMemoryWindowEnd) + "; " + windows
                        : windows + fmt::format(" (64-bit BARs of {} or more go only there)",
                                                size_text(kMemory64InLowWindowBelow));
        break;
    }
    }
    throw std::runtime_error(fmt::format("PCI: no room for BAR{}, {} {} BAR of {}: {}", bar.index,
                                         bar.kind == PciBarKind::Io ? "an" : "a", to_string(bar.kind),
                                         size_text(bar.size), windows));
}

std::vector<PciInterruptRoute> PciHostBridge::interrupt_routes() const {
    std::lock_guard lock(mutex_);
    std::vector<PciInterruptRoute> routes;
    for (size_t number = 1; number < slots_used_; ++number)
        routes.push_back(PciInterruptRoute{static_cast<uint8_t>(number), 0 /* INTA# */, slots_[number].gsi});
    return routes;
}

void PciHostBridge::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mutex_);
    if (offset == 0 && data.size() == 4) {
        for (size_t i = 0; i < 4; ++i) data[i] = static_cast<uint8_t>(config_address_ >> (8 * i));
        return;
    }
    std::fill(data.begin(), data.end(), 0xff);
    // Byte/word accesses to 0xcf8-0xcfb are not config accesses (see the
    // header); the bus never sends accesses that run past 0xcff.
    if (offset < kDataWindowOffset || offset + data.size() > kPortCount) return;
    Target target = selected_function();
    if (target.config != nullptr) {
        const auto byte_in_dword = static_cast<uint32_t>(offset - kDataWindowOffset);
        const uint32_t config_offset = register_of(config_address_) + byte_in_dword;
        if (target.slot != nullptr) target.slot->device->config_read(config_offset, data);
        else target.config->read(config_offset, data);
    }
    if (trace()) trace_access("read ", offset, data, target.config != nullptr);
}

void PciHostBridge::write(uint64_t offset, std::span<const uint8_t> data) {
    std::lock_guard lock(mutex_);
    if (offset == 0 && data.size() == 4) {
        uint32_t value = 0;
        for (size_t i = 0; i < 4; ++i) value |= uint32_t{data[i]} << (8 * i);
        config_address_ = value & kConfigAddressMask;
        return;
    }
    if (offset < kDataWindowOffset || offset + data.size() > kPortCount) return;
    Target target = selected_function();
    // Before the effects, so the BAR lines it causes follow it.
    if (trace()) trace_access("write", offset, data, target.config != nullptr);
    if (target.config == nullptr) return;
    const auto byte_in_dword = static_cast<uint32_t>(offset - kDataWindowOffset);
    const uint32_t config_offset = register_of(config_address_) + byte_in_dword;
    if (target.slot == nullptr) {  // the bridge itself: no BARs, no interrupt
        target.config->write(config_offset, data);
        return;
    }
    const PciConfigChanges changes = target.slot->device->config_write(config_offset, data);
    target.slot->device->config_written(config_offset, static_cast<uint32_t>(data.size()));
    if (changes.decoding_may_have_changed())
        update_bar_mappings(static_cast<uint8_t>(device_of(config_address_)), *target.slot);
    if (changes.intx_disable_changed) target.slot->intx->refresh();
}

void PciHostBridge::trace_access(const char* direction, uint64_t offset, std::span<const uint8_t> data,
                                 bool found) const {
    const uint32_t address = config_address_;
    uint32_t value = 0;
    for (size_t i = 0; i < data.size(); ++i) value |= uint32_t{data[i]} << (8 * i);
    // The data window carries no config cycle while the enable bit is clear.
    const char* const note = !(address & kEnableBit) ? " not enabled" : found ? "" : " no device";
    spdlog::info("trace pci {:02x}:{:02x}.{} {} off={:#04x} len={} val={:#0{}x}{}", bus_of(address), device_of(address),
                 function_of(address), direction, register_of(address) + (offset - kDataWindowOffset), data.size(),
                 value, 2 + 2 * data.size(), note);
}

PciHostBridge::Target PciHostBridge::selected_function() {
    const uint32_t address = config_address_;
    if (!(address & kEnableBit) || bus_of(address) != 0 || function_of(address) != 0) return {};
    const unsigned number = device_of(address);
    if (number == 0) return {&own_config_, nullptr};
    Slot& slot = slots_[number];
    if (slot.device == nullptr) return {};
    return {&slot.device->config(), &slot};
}

void PciHostBridge::update_bar_mappings(uint8_t device_number, Slot& slot) {
    PciConfigSpace& config = slot.device->config();
    for (MappedBar& mapped : slot.bars) {
        const std::optional<uint64_t> wanted = config.bar_decode_address(mapped.bar.index);
        if (wanted == mapped.wanted) continue;  // includes "still where it failed to map"
        unmap(device_number, mapped, slot.device);
        mapped.wanted = wanted;
        if (!wanted) continue;
        Bus& bus = mapped.bar.kind == PciBarKind::Io ? io_bus_ : mmio_bus_;
        try {
            bus.add(*wanted, mapped.bar.size, mapped.bar.handler);
            mapped.mapped = true;
            if (trace())
                spdlog::info("trace pci {} BAR{} map {} {:#x}+{:#x}", PciBdf{0, device_number, 0}.to_string(),
                             mapped.bar.index, trace_name(mapped.bar.kind), *wanted, mapped.bar.size);
            slot.device->bar_mapping_changed(mapped.bar.index, *wanted);
        } catch (const std::invalid_argument& error) {
            // The guest's mistake, not ours: keep running with the BAR off.
            spdlog::warn("PCI {} BAR{}: cannot decode {} {:#x}-{:#x}, the range is taken ({}); left unmapped until the "
                         "guest moves it",
                         PciBdf{0, device_number, 0}.to_string(), mapped.bar.index, to_string(mapped.bar.kind), *wanted,
                         *wanted + mapped.bar.size - 1, error.what());
        }
    }
}

void PciHostBridge::unmap(uint8_t device_number, MappedBar& mapped, PciDevice* device) {
    if (mapped.mapped) {
        Bus& bus = mapped.bar.kind == PciBarKind::Io ? io_bus_ : mmio_bus_;
        bus.remove(*mapped.wanted);
        if (trace())
            spdlog::info("trace pci {} BAR{} unmap {} {:#x}+{:#x}", PciBdf{0, device_number, 0}.to_string(),
                         mapped.bar.index, trace_name(mapped.bar.kind), *mapped.wanted, mapped.bar.size);
        if (device != nullptr) device->bar_mapping_changed(mapped.bar.index, std::nullopt);
    }
    mapped.mapped = false;
    mapped.wanted.reset();
}

}  // namespace minikvm
