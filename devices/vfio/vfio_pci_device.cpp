#include "devices/vfio/vfio_pci_device.h"

#include <linux/vfio.h>

#include <algorithm>
#include <utility>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/core/error.h"

namespace minikvm {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint32_t kHeaderEnd = 0x40;
constexpr uint8_t kHeaderTypeMultifunction = 0x80;
// Command bits that are the guest's to set on the device.
constexpr uint16_t kMirroredCommand = PciConfigSpace::kCommandIoEnable | PciConfigSpace::kCommandMemoryEnable |
                                      PciConfigSpace::kCommandBusMaster | PciConfigSpace::kCommandIntxDisable;
// BAR register type bits.
constexpr uint32_t kBarIo = 0x1;
constexpr uint32_t kBarMemoryTypeMask = 0x6;
constexpr uint32_t kBarMemory64 = 0x4;
constexpr uint32_t kBarPrefetchable = 0x8;

uint16_t le16(std::span<const uint8_t> bytes, uint32_t at) { return static_cast<uint16_t>(bytes[at] | bytes[at + 1] << 8); }
uint32_t le32(std::span<const uint8_t> bytes, uint32_t at) {
    return uint32_t{bytes[at]} | uint32_t{bytes[at + 1]} << 8 | uint32_t{bytes[at + 2]} << 16 |
           uint32_t{bytes[at + 3]} << 24;
}

uint64_t value_of(std::span<const uint8_t> data) {
    uint64_t value = 0;
    for (size_t i = 0; i < data.size() && i < 8; ++i) value |= uint64_t{data[i]} << (8 * i);
    return value;
}

std::array<uint8_t, 256> read_config_or_fail(VfioDeviceIo& device, const std::string& name) {
    // Reset first, so what the guest is shown is the device's power-on state.
    if (!device.reset())
        spdlog::info("{}: the device has no reset VFIO can do; it starts as the host left it", name);
    std::array<uint8_t, 256> bytes{};
    if (!device.read_config(0, bytes))
        fail(ExitCode::BadDevice, "{}: cannot read the device's configuration space through VFIO", name);
    if (le16(bytes, PciConfigSpace::kVendorId) == 0xffff)
        fail(ExitCode::BadDevice, "{}: the device does not answer configuration reads (vendor ID 0xffff)", name);
    return bytes;
}

PciIdentity identity_of(const std::array<uint8_t, 256>& bytes) {
    PciIdentity identity;
    identity.vendor_id = le16(bytes, PciConfigSpace::kVendorId);
    identity.device_id = le16(bytes, PciConfigSpace::kDeviceId);
    identity.class_code = le32(bytes, PciConfigSpace::kRevision) >> 8;
    identity.revision = bytes[PciConfigSpace::kRevision];
    identity.subsystem_vendor_id = le16(bytes, PciConfigSpace::kSubsystemVendorId);
    identity.subsystem_id = le16(bytes, PciConfigSpace::kSubsystemId);
    return identity;
}

}  // namespace

class VfioPciDevice::BarHandler : public BusDevice {
public:
    BarHandler(VfioPciDevice& owner, unsigned index) : owner_(owner), index_(index) {}
    void read(uint64_t offset, std::span<uint8_t> data) override { owner_.bar_read(index_, offset, data); }
    void write(uint64_t offset, std::span<const uint8_t> data) override { owner_.bar_write(index_, offset, data); }

private:
    VfioPciDevice& owner_;
    const unsigned index_;
};

VfioPciDevice::VfioPciDevice(VfioDeviceIo& device, Kvm kvm, std::string name)
    : device_(device),
      kvm_(kvm),
      name_(std::move(name)),
      hardware_(read_config_or_fail(device, name_)),
      config_(identity_of(hardware_)) {
    set_up_bars();
    set_up_capabilities();
    // The header type is the device's layout (type 0), never multifunction:
    // minikvm assigns one function per slot.
    if ((hardware_[PciConfigSpace::kHeaderType] & 0x7f) != 0)
        fail(ExitCode::BadDevice, "{}: header type {:#x} is not an endpoint's (bridges cannot be assigned)", name_,
             hardware_[PciConfigSpace::kHeaderType] & ~kHeaderTypeMultifunction);
    // Bus mastering, decoding and INTx-disable start as the guest's command
    // register says: all off.
    mirror_command();
}

VfioPciDevice::~VfioPciDevice() {
    try {
        leave_message_mode();
        if (intx_) intx_->disable();
        // No more DMA and no decoding, then the device's own reset.
        const uint16_t command = le16(hardware_, PciConfigSpace::kCommand) & ~kMirroredCommand;
        const uint8_t bytes[2] = {static_cast<uint8_t>(command), static_cast<uint8_t>(command >> 8)};
        device_.write_config(PciConfigSpace::kCommand, bytes);
        device_.reset();
    } catch (const std::exception& error) {
        spdlog::warn("{}: releasing the device: {}", name_, error.what());
    }
}

void VfioPciDevice::set_up_bars() {
    const auto& regions = device_.regions();
    for (unsigned index = 0; index < PciConfigSpace::kBarCount; ++index) {
        if (index >= regions.size() || regions[index].size == 0) continue;
        const uint32_t raw = le32(hardware_, PciConfigSpace::kBar0 + 4 * index);
        Bar& bar = bars_[index];
        bar.present = true;
        bar.size = regions[index].size;
        if (raw & kBarIo) {
            bar.kind = PciBarKind::Io;
            if (bar.size > PciConfigSpace::kMaxIoBarSize)
                fail(ExitCode::BadDevice, "{}: BAR{} is an I/O BAR of {} bytes; minikvm places at most {}", name_,
                     index, bar.size, PciConfigSpace::kMaxIoBarSize);
        } else {
            bar.kind = (raw & kBarMemoryTypeMask) == kBarMemory64 ? PciBarKind::Memory64 : PciBarKind::Memory32;
            bar.prefetchable = (raw & kBarPrefetchable) != 0;
            bar.size = std::max<uint64_t>(bar.size, PciConfigSpace::kMinMemoryBarSize);
            if (regions[index].mappable() && bar.size >= kPage) {
                bar.mapping = device_.map_region(index);
                if (!bar.mapping)
                    spdlog::info("{}: BAR{} cannot be mmapped ({}); its accesses go through VFIO, each one an exit",
                                 name_, index, std::strerror(errno));
            }
        }
        bar.handler = std::make_unique<BarHandler>(*this, index);
        if (bar.kind == PciBarKind::Memory64) ++index;  // the upper half's register
    }
}

void VfioPciDevice::set_up_capabilities() {
    // From 0x40 up, every byte is the device's unless a kept capability
    // covers it.
    std::fill(passthrough_.begin() + kHeaderEnd, passthrough_.end(), true);
    capabilities_ = walk_pci_capabilities(hardware_);
    for (VfioPciCapability& capability : capabilities_) {
        if (capability.treatment == VfioPciCapability::Treatment::Hidden) continue;
        try {
            if (capability.id == kPciCapabilityMsix) {
                set_up_msix(capability);
            } else if (capability.id == kPciCapabilityMsi) {
                set_up_msi(capability);
            } else {
                const std::vector<uint8_t> body = guest_capability_body(hardware_, capability);
                config_.add_capability_at(capability.offset, capability.id, body);
            }
        } catch (const std::exception& error) {
            // The device's capability list is not what it claims: hide it.
            spdlog::warn("{}: {} capability at {:#x} left out: {}", name_, pci_capability_name(capability.id),
                         capability.offset, error.what());
            capability.treatment = VfioPciCapability::Treatment::Hidden;
            continue;
        }
        std::fill_n(passthrough_.begin() + capability.offset, capability.length, false);
    }
}

void VfioPciDevice::set_up_msix(const VfioPciCapability& capability) {
    if (!vfio_has(VFIO_PCI_MSIX_IRQ_INDEX)) throw std::invalid_argument("VFIO offers no MSI-X interrupts for it");
    const uint16_t control = le16(hardware_, capability.offset + 2u);
    const uint32_t table = le32(hardware_, capability.offset + 4u);
    const uint32_t pba = le32(hardware_, capability.offset + 8u);
    MsixCapability::Layout layout{table & 7u, table & ~7u, pba & 7u, pba & ~7u, capability.offset};
    const auto vectors = static_cast<uint16_t>((control & 0x7ff) + 1);
    const auto usable = [&](unsigned bar, uint64_t offset, uint64_t bytes) {
        return bar < bars_.size() && bars_[bar].present && bars_[bar].kind != PciBarKind::Io &&
               offset + bytes <= bars_[bar].size;
    };
    if (!usable(layout.table_bar, layout.table_offset, uint64_t{vectors} * MsixTable::kEntryBytes) ||
        !usable(layout.pba_bar, layout.pba_offset, (vectors + 63u) / 64u * 8u))
        throw std::invalid_argument("its table or PBA is not inside a memory BAR of the device");
    msix_vectors_ = std::make_unique<VfioMsiVectors>(vectors, kvm_.vm, kvm_.routing, name_, "MSI-X");
    msix_ = std::make_unique<MsixCapability>(
        config_, vectors, layout, [this](uint16_t vector, const MsiMessage&) { msix_vectors_->deliver(vector); },
        [this](uint16_t vector, const MsiMessage& message) {
            spdlog::warn("{}: MSI-X vector {} has address {:#x} data {:#x}, not an interrupt message; "
                         "not delivered",
                         name_, vector, message.address, message.data);
        },
        name_, &trace_);
    const auto trap = [&](unsigned bar, uint64_t start, uint64_t bytes) {
        trapped_.push_back({bar, start & ~(kPage - 1), (start + bytes + kPage - 1) & ~(kPage - 1)});
    };
    trap(layout.table_bar, layout.table_offset, msix_->table().table_bytes());
    trap(layout.pba_bar, layout.pba_offset, msix_->table().pba_bytes());
}

void VfioPciDevice::set_up_msi(const VfioPciCapability& capability) {
    if (!vfio_has(VFIO_PCI_MSI_IRQ_INDEX)) throw std::invalid_argument("VFIO offers no MSI interrupts for it");
    const uint16_t control = le16(hardware_, capability.offset + 2u);
    const auto log2_vectors = static_cast<uint8_t>(std::min((control >> 1) & 7, 5));
    msi_ = std::make_unique<MsiCapability>(config_, capability.offset, log2_vectors,
                                           (control & MsiCapability::kControl64Bit) != 0,
                                           (control & MsiCapability::kControlPerVectorMask) != 0);
    msi_vectors_ = std::make_unique<VfioMsiVectors>(uint16_t{1} << log2_vectors, kvm_.vm, kvm_.routing, name_, "MSI");
}

bool VfioPciDevice::vfio_has(uint32_t irq_index) const {
    const auto& irqs = device_.irqs();
    return irq_index < irqs.size() && irqs[irq_index].count != 0;
}

std::vector<PciBar> VfioPciDevice::bars() {
    std::vector<PciBar> out;
    for (unsigned index = 0; index < PciConfigSpace::kBarCount; ++index) {
        const Bar& bar = bars_[index];
        if (!bar.present) continue;
        out.push_back(PciBar{.index = index,
                             .kind = bar.kind,
                             .size = bar.size,
                             .handler = *bar.handler,
                             .prefetchable = bar.prefetchable});
    }
    return out;
}

void VfioPciDevice::config_read(uint32_t offset, std::span<uint8_t> data) {
    config_.read(offset, data);
    bool any_passthrough = false;
    for (size_t i = 0; i < data.size(); ++i) any_passthrough |= passthrough(offset + static_cast<uint32_t>(i));
    if (any_passthrough) {
        std::array<uint8_t, 4> device_bytes{};
        const auto part = std::span(device_bytes).first(data.size());
        if (!device_.read_config(offset, part)) std::fill(part.begin(), part.end(), 0xff);
        for (size_t i = 0; i < data.size(); ++i)
            if (passthrough(offset + static_cast<uint32_t>(i))) data[i] = part[i];
    }
    if (tracing()) trace_config("read ", offset, data, any_passthrough ? "device" : "emulated");
}

PciConfigChanges VfioPciDevice::config_write(uint32_t offset, std::span<const uint8_t> data) {
    bool any_passthrough = false;
    for (size_t i = 0; i < data.size(); ++i) any_passthrough |= passthrough(offset + static_cast<uint32_t>(i));
    const bool command = offset < PciConfigSpace::kCommand + 2u && offset + data.size() > PciConfigSpace::kCommand;
    if (tracing())
        trace_config("write", offset, data,
                     any_passthrough ? "device" : command ? "emulated, mirrored to the device" : "emulated");
    const uint16_t old_command = config_.command();
    const PciConfigChanges changes = config_.write(offset, data);
    if (any_passthrough) {
        // Byte by byte, so emulated bytes in the same access stay ours.
        for (size_t i = 0; i < data.size(); ++i)
            if (passthrough(offset + static_cast<uint32_t>(i)) &&
                !device_.write_config(offset + static_cast<uint32_t>(i), data.subspan(i, 1)))
                spdlog::debug("{}: config write at {:#x} refused by VFIO", name_, offset + i);
    }
    if (command) {
        // Decoding off: take the KVM slots away before the device stops
        // answering behind them (the bridge unmaps the rest afterwards).
        if ((old_command & PciConfigSpace::kCommandMemoryEnable) &&
            !(config_.command() & PciConfigSpace::kCommandMemoryEnable))
            for (unsigned index = 0; index < PciConfigSpace::kBarCount; ++index) drop_slots(index);
        mirror_command();
    }
    return changes;
}

void VfioPciDevice::mirror_command() {
    std::array<uint8_t, 2> bytes{};
    if (!device_.read_config(PciConfigSpace::kCommand, bytes)) return;
    const uint16_t device_command = le16(bytes, 0);
    const uint16_t wanted = static_cast<uint16_t>((device_command & ~kMirroredCommand) | (config_.command() & kMirroredCommand));
    if (wanted == device_command) return;
    bytes = {static_cast<uint8_t>(wanted), static_cast<uint8_t>(wanted >> 8)};
    if (!device_.write_config(PciConfigSpace::kCommand, bytes))
        spdlog::warn("{}: VFIO refused the command register {:#06x}", name_, wanted);
}

void VfioPciDevice::config_written(uint32_t offset, uint32_t length) {
    if (msix_ && msix_->config_written(offset, length)) {
        if (msix_->enabled()) switch_to_msix();
        else if (mode_ != InterruptMode::Msi) switch_to_intx();
    }
    if (msi_ && msi_->config_written(offset, length)) {
        if (msi_->enabled()) switch_to_msi();  // again when the vector count changed
        else if (mode_ != InterruptMode::Msix) switch_to_intx();
    }
    // Masks, messages or bus mastering may have changed.
    if (mode_ == InterruptMode::Msix)
        msix_vectors_->sync_all([this](uint16_t vector) { return msix_->table().deliverable_message(vector); });
    if (mode_ == InterruptMode::Msi)
        msi_vectors_->sync_all([this](uint16_t vector) { return msi_->deliverable_message(vector); });
}

void VfioPciDevice::leave_message_mode() {
    if (mode_ == InterruptMode::Msix) {
        msix_vectors_->unbind_all();
        device_.disable_irq(VFIO_PCI_MSIX_IRQ_INDEX);
    } else if (mode_ == InterruptMode::Msi) {
        msi_vectors_->unbind_all();
        device_.disable_irq(VFIO_PCI_MSI_IRQ_INDEX);
    }
    mode_ = InterruptMode::None;
}

void VfioPciDevice::switch_to_msix() {
    if (mode_ == InterruptMode::Msi) {
        if (!std::exchange(both_logged_, true))
            spdlog::warn("{}: the guest enabled MSI-X while MSI is on; MSI stays (logged once)", name_);
        return;
    }
    leave_message_mode();
    if (intx_) intx_->disable();
    const std::span<const int32_t> fds = msix_vectors_->eventfds();
    if (!device_.set_irq_eventfds(VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, 0, fds)) {
        spdlog::error("{}: VFIO cannot enable the device's {} MSI-X vectors: {}; it has no interrupts until the "
                      "guest disables MSI-X",
                      name_, fds.size(), std::strerror(errno));
        return;
    }
    mode_ = InterruptMode::Msix;
    if (tracing()) spdlog::info("trace {} interrupts msix vectors={}", name_, fds.size());
}

void VfioPciDevice::switch_to_msi() {
    if (mode_ == InterruptMode::Msix) {
        if (!std::exchange(both_logged_, true))
            spdlog::warn("{}: the guest enabled MSI while MSI-X is on; MSI-X stays (logged once)", name_);
        return;
    }
    leave_message_mode();
    if (intx_) intx_->disable();
    const std::span<const int32_t> fds = msi_vectors_->eventfds().first(msi_->vectors());
    if (!device_.set_irq_eventfds(VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, 0, fds)) {
        spdlog::error("{}: VFIO cannot enable {} MSI vector(s): {}; the device has no interrupts until the guest "
                      "disables MSI",
                      name_, fds.size(), std::strerror(errno));
        return;
    }
    mode_ = InterruptMode::Msi;
    if (tracing()) spdlog::info("trace {} interrupts msi vectors={}", name_, fds.size());
}

void VfioPciDevice::switch_to_intx() {
    if (mode_ == InterruptMode::Intx) return;
    leave_message_mode();
    mode_ = intx_ && intx_->enable() ? InterruptMode::Intx : InterruptMode::None;
    if (tracing()) spdlog::info("trace {} interrupts {}", name_, mode_ == InterruptMode::Intx ? "intx" : "none");
}

void VfioPciDevice::connect_intx(IrqLine& intx) {
    const auto& irqs = device_.irqs();
    const bool has_intx = VFIO_PCI_INTX_IRQ_INDEX < irqs.size() && irqs[VFIO_PCI_INTX_IRQ_INDEX].count != 0 &&
                          hardware_[PciConfigSpace::kInterruptPin] != 0;
    if (!has_intx) {
        config_.set_interrupt_pin(0);  // none to offer: the guest must not wait for one
        return;
    }
    const std::optional<uint32_t> gsi = intx.gsi();
    if (!gsi || kvm_.vm == nullptr) return;
    intx_ = std::make_unique<VfioIntx>(device_, kvm_.vm, *gsi);
    switch_to_intx();
}

bool VfioPciDevice::in_msix_table(unsigned bar, uint64_t offset) const {
    if (!msix_ || bar != msix_->layout().table_bar) return false;
    const uint64_t start = msix_->layout().table_offset;
    return offset >= start && offset < start + msix_->table().table_bytes();
}

bool VfioPciDevice::in_msix_pba(unsigned bar, uint64_t offset) const {
    if (!msix_ || bar != msix_->layout().pba_bar) return false;
    const uint64_t start = msix_->layout().pba_offset;
    return offset >= start && offset < start + msix_->table().pba_bytes();
}

void VfioPciDevice::bar_read(unsigned index, uint64_t offset, std::span<uint8_t> data) {
    if (in_msix_table(index, offset)) {
        msix_->read(offset, data);
        return;
    }
    if (in_msix_pba(index, offset)) {
        for (uint16_t vector : msix_vectors_->take_waiting()) msix_->table().signal(vector);
        if (index == msix_->layout().table_bar) msix_->read(offset, data);
        else msix_->read_pba_bar(offset, data);
        return;
    }
    if (!device_.read(index, offset, data)) {
        std::fill(data.begin(), data.end(), 0xff);
        if (!bar_failure_logged_.exchange(true))
            spdlog::warn("{}: BAR{} read of {} bytes at {:#x} failed in VFIO; read as all-ones (logged once)", name_,
                         index, data.size(), offset);
    }
}

void VfioPciDevice::bar_write(unsigned index, uint64_t offset, std::span<const uint8_t> data) {
    if (in_msix_table(index, offset)) {
        msix_->write(offset, data);
        if (mode_ == InterruptMode::Msix) {
            const uint64_t first = (offset - msix_->layout().table_offset) / MsixTable::kEntryBytes;
            const uint64_t last = (offset + data.size() - 1 - msix_->layout().table_offset) / MsixTable::kEntryBytes;
            for (uint64_t vector = first; vector <= last; ++vector)
                msix_vectors_->sync(static_cast<uint16_t>(vector),
                                    msix_->table().deliverable_message(static_cast<uint16_t>(vector)));
        }
        return;
    }
    if (in_msix_pba(index, offset)) {
        msix_->write(offset, data);  // read-only: refused and logged there
        return;
    }
    if (!device_.write(index, offset, data) && !bar_failure_logged_.exchange(true))
        spdlog::warn("{}: BAR{} write of {} bytes at {:#x} failed in VFIO; dropped (logged once)", name_, index,
                     data.size(), offset);
}

void VfioPciDevice::drop_slots(unsigned index) {
    if (!bars_[index].slots.empty() && tracing())
        spdlog::info("trace {} BAR{} slots removed ({})", name_, index, bars_[index].slots.size());
    bars_[index].slots.clear();
}

void VfioPciDevice::map_slots(unsigned index, uint64_t base) {
    Bar& bar = bars_[index];
    if (!bar.mapping || kvm_.slots == nullptr) return;
    // The BAR minus its trapped pages, in page-aligned pieces.
    std::vector<std::pair<uint64_t, uint64_t>> pieces{{0, bar.size}};
    for (const Trapped& trapped : trapped_) {
        if (trapped.bar != index) continue;
        std::vector<std::pair<uint64_t, uint64_t>> next;
        for (auto [start, end] : pieces) {
            if (trapped.end <= start || trapped.start >= end) {
                next.emplace_back(start, end);
                continue;
            }
            if (start < trapped.start) next.emplace_back(start, trapped.start);
            if (trapped.end < end) next.emplace_back(trapped.end, end);
        }
        pieces = std::move(next);
    }
    for (auto [start, end] : pieces) {
        try {
            bar.slots.push_back(kvm_.slots->add(base + start, end - start, bar.mapping->data() + start));
            if (tracing())
                spdlog::info("trace {} BAR{} slot {:#x}+{:#x} -> device offset {:#x}", name_, index, base + start,
                             end - start, start);
        } catch (const std::exception& error) {
            // Still correct, only slower: the piece traps and goes through VFIO.
            spdlog::warn("{}: BAR{} at {:#x}: no KVM memory slot for {:#x}+{:#x} ({}); those accesses exit", name_,
                         index, base, start, end - start, error.what());
        }
    }
}

void VfioPciDevice::bar_mapping_changed(unsigned index, std::optional<uint64_t> base) {
    if (index >= bars_.size() || !bars_[index].present) return;
    drop_slots(index);
    if (base) map_slots(index, *base);
    if (tracing())
        spdlog::info("trace {} BAR{} {} {}", name_, index, trace_name(bars_[index].kind),
                     base ? fmt::format("at {:#x}+{:#x}", *base, bars_[index].size) : std::string("unmapped"));
}

size_t VfioPciDevice::bar_slots(unsigned index) const { return index < bars_.size() ? bars_[index].slots.size() : 0; }

void VfioPciDevice::trace_config(const char* direction, uint32_t offset, std::span<const uint8_t> data,
                                 const char* how) const {
    spdlog::info("trace {} config {} off={:#04x} len={} val={:#0{}x} {}", name_, direction, offset, data.size(),
                 value_of(data), 2 + 2 * data.size(), how);
}

std::string VfioPciDevice::state_report() const {
    std::string out = fmt::format("{} (assigned, PCI {}): {:04x}:{:04x} command={:#06x} interrupts={}\n", name_,
                                  address_.to_string(), le16(hardware_, 0), le16(hardware_, 2), config_.command(),
                                  mode_ == InterruptMode::Msix   ? "msix"
                                  : mode_ == InterruptMode::Msi  ? "msi"
                                  : mode_ == InterruptMode::Intx ? fmt::format("intx gsi={}", intx_->gsi())
                                                                 : "none");
    for (unsigned index = 0; index < bars_.size(); ++index) {
        const Bar& bar = bars_[index];
        if (!bar.present) continue;
        out += fmt::format("  BAR{} {} size={:#x} at={:#x} mmap={} slots={}\n", index, trace_name(bar.kind), bar.size,
                           config_.bar_address(index), bar.mapping ? "yes" : "no", bar.slots.size());
    }
    for (const VfioPciCapability& capability : capabilities_)
        out += fmt::format("  capability {:#04x} {} at {:#x}: {}\n", capability.id, pci_capability_name(capability.id),
                           capability.offset,
                           capability.treatment == VfioPciCapability::Treatment::Emulated       ? "emulated"
                           : capability.treatment == VfioPciCapability::Treatment::ReadOnlyCopy ? "read-only copy"
                                                                                                : "hidden");
    std::string lines;
    if (msix_) lines += msix_->state_lines() + msix_vectors_->state_lines();
    if (msi_) lines += msi_->state_lines() + msi_vectors_->state_lines();
    for (size_t start = 0; start < lines.size();) {
        const size_t end = lines.find('\n', start);
        out += "  " + lines.substr(start, end - start + 1);
        start = end + 1;
    }
    return out;
}

}  // namespace minikvm
