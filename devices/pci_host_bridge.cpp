#include "devices/pci_host_bridge.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>

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

const char* kind_name(PciBarKind kind) { return kind == PciBarKind::Io ? "I/O" : "memory"; }
const char* short_kind_name(PciBarKind kind) { return kind == PciBarKind::Io ? "io" : "mem"; }

// Takes `size` bytes, aligned to `size`, from [next, end); advances next.
uint32_t allocate(uint32_t& next, uint32_t end, uint32_t size, const char* window) {
    const uint64_t base = (uint64_t{next} + size - 1) & ~(uint64_t{size} - 1);
    if (base + size > end)
        throw std::runtime_error(fmt::format("PCI {} window is full: no room for a BAR of {:#x} bytes", window, size));
    next = static_cast<uint32_t>(base + size);
    return static_cast<uint32_t>(base);
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

PciHostBridge::PciHostBridge(IoBus& io_bus, MmioBus& mmio_bus, IrqLineFactory make_irq_line)
    : io_bus_(io_bus), mmio_bus_(mmio_bus), make_irq_line_(std::move(make_irq_line)) {}

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

    // Place the BARs on copies of the window cursors, so a failure leaves
    // the bridge as it was.
    uint32_t next_io = next_io_address_;
    uint32_t next_memory = next_memory_address_;
    for (const PciBar& bar : device.bars()) {
        config.declare_bar(bar.index, bar.kind, bar.size);
        const uint32_t address = bar.kind == PciBarKind::Io
                                     ? allocate(next_io, kIoWindowEnd, bar.size, "I/O")
                                     : allocate(next_memory, kMemoryWindowEnd, bar.size, "memory");
        config.set_bar_address(bar.index, address);
        slot.bars.push_back(MappedBar{bar, std::nullopt, false});
        spdlog::debug("PCI {} BAR{}: {} {:#x}+{:#x}", bdf.to_string(), bar.index, kind_name(bar.kind), address, bar.size);
    }
    config.set_interrupt_pin(kPinIntA);
    config.set_interrupt_line(slot.gsi);
    std::unique_ptr<IrqLine> output = make_irq_line_(slot.gsi);
    if (!output) throw std::invalid_argument(fmt::format("PCI: no interrupt line for GSI {}", slot.gsi));
    slot.intx = std::make_unique<IntxLine>(config, std::move(output));

    next_io_address_ = next_io;
    next_memory_address_ = next_memory;
    slots_[number] = std::move(slot);
    ++slots_used_;
    // Maps nothing after a reset (decoding is off); only a command register
    // written before registration would map something here.
    update_bar_mappings(number, slots_[number]);
    device.pci_address_assigned(bdf);
    device.connect_intx(*slots_[number].intx);
    return bdf;
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
        const std::optional<uint32_t> wanted = config.bar_decode_address(mapped.bar.index);
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
                             mapped.bar.index, short_kind_name(mapped.bar.kind), *wanted, mapped.bar.size);
            slot.device->bar_mapping_changed(mapped.bar.index, *wanted);
        } catch (const std::invalid_argument& error) {
            // The guest's mistake, not ours: keep running with the BAR off.
            spdlog::warn("PCI {} BAR{}: cannot decode {} {:#x}-{:#x}, the range is taken ({}); left unmapped until the "
                         "guest moves it",
                         PciBdf{0, device_number, 0}.to_string(), mapped.bar.index, kind_name(mapped.bar.kind), *wanted,
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
                         mapped.bar.index, short_kind_name(mapped.bar.kind), *mapped.wanted, mapped.bar.size);
        if (device != nullptr) device->bar_mapping_changed(mapped.bar.index, std::nullopt);
    }
    mapped.mapped = false;
    mapped.wanted.reset();
}

}  // namespace minikvm
