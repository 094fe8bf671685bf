#include "virtio/virtio_pci_legacy.h"

#include <unistd.h>

#include <algorithm>
#include <exception>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "virtio/split_ring.h"

namespace minikvm {

namespace {

// The register block, for splitting an access of any width into registers.
struct Register {
    uint32_t offset;
    uint32_t width;
};
constexpr Register kRegisters[] = {
    {VirtioPciLegacy::kHostFeatures, 4}, {VirtioPciLegacy::kGuestFeatures, 4}, {VirtioPciLegacy::kQueuePfn, 4},
    {VirtioPciLegacy::kQueueSize, 2},    {VirtioPciLegacy::kQueueSelect, 2},   {VirtioPciLegacy::kQueueNotify, 2},
    {VirtioPciLegacy::kStatus, 1},       {VirtioPciLegacy::kIsr, 1},
};

// Length of the overlap of [a, a + a_len) and [b, b + b_len), and where it starts.
struct Overlap {
    uint64_t start;
    uint64_t length;
};
Overlap overlap(uint64_t a, uint64_t a_len, uint64_t b, uint64_t b_len) {
    const uint64_t start = std::max(a, b);
    const uint64_t end = std::min(a + a_len, b + b_len);
    return {start, end > start ? end - start : 0};
}

uint32_t validated_config_bar_size(const VirtioDevice& device) {
    const uint32_t config_size = device.config_size();
    if (config_size > PciConfigSpace::kMaxIoBarSize - VirtioPciLegacy::kConfig)
        throw std::invalid_argument(
            fmt::format("virtio-pci: {} bytes of device configuration do not fit a legacy I/O BAR", config_size));
    return VirtioPciLegacy::bar_size_for(config_size);
}

}  // namespace

PciIdentity VirtioPciLegacy::identity_for(VirtioDeviceType type) {
    // Transitional device IDs (virtio 1.2 4.1.2.1) are a table, not a
    // formula: 0x1002 is the balloon, so the console is 0x1003.
    uint16_t device_id = 0;
    uint32_t class_code = 0;
    switch (type) {
        case VirtioDeviceType::Net:
            device_id = 0x1000;
            class_code = 0x02'00'00;  // network controller, Ethernet
            break;
        case VirtioDeviceType::Block:
            device_id = 0x1001;
            class_code = 0x01'00'00;  // mass storage, SCSI (as QEMU)
            break;
        case VirtioDeviceType::Console:
            device_id = 0x1003;
            class_code = 0x07'80'00;  // communication controller, other
            break;
        default:
            throw std::invalid_argument(
                fmt::format("virtio-pci: no legacy PCI identity for device type {}", static_cast<unsigned>(type)));
    }
    return PciIdentity{.vendor_id = kVendorId,
                       .device_id = device_id,
                       .class_code = class_code,
                       .revision = 0,  // legacy drivers (virtio_pci_legacy) require revision 0
                       .subsystem_vendor_id = kVendorId,
                       .subsystem_id = static_cast<uint16_t>(type)};
}

uint32_t VirtioPciLegacy::bar_size_for(uint32_t config_size) {
    uint32_t size = kMinBarSize;
    while (size < kConfig + uint64_t{config_size}) size <<= 1;
    return size;
}

VirtioPciLegacy::VirtioPciLegacy(VirtioDevice& device, const GuestMemory& memory, std::string name,
                                 NotifyEventfds* eventfds)
    : device_(device),
      name_(std::move(name)),
      device_features_(device.device_features()),
      config_size_(device.config_size()),
      bar_size_(validated_config_bar_size(device)),
      config_(identity_for(device.device_type())),
      eventfds_(eventfds) {
    const unsigned count = device.queue_count();
    // Queue select is 16 bits wide, so no more queues than it can name.
    if (count > 0x10000) throw std::invalid_argument(fmt::format("{}: {} queues are too many", name_, count));
    queue_sizes_.reserve(count);
    queues_.reserve(count);
    for (unsigned i = 0; i < count; ++i) {
        const uint16_t size = device.queue_max_size(i);
        if (!split_ring::valid_queue_size(size))
            throw std::invalid_argument(fmt::format("{}: queue {} size {} is not a power of two", name_, i, size));
        queue_sizes_.push_back(size);
        queues_.emplace_back(memory, fmt::format("{} q{}", name_, i));
    }
}

VirtioPciLegacy::~VirtioPciLegacy() {
    {
        std::lock_guard lock(eventfd_mutex_);
        unregister_eventfds();
    }
    // The device must stop using the queues before they go away.
    std::lock_guard lock(device_mutex_);
    reset_locked();
}

std::vector<PciBar> VirtioPciLegacy::bars() {
    return {PciBar{.index = 0, .kind = PciBarKind::Io, .size = bar_size_, .handler = *this}};
}

void VirtioPciLegacy::connect_intx(IrqLine& intx) {
    std::lock_guard lock(state_mutex_);
    intx_ = &intx;  // nothing can be asserted yet: raise_locked() needs a line
}

uint8_t VirtioPciLegacy::status() const {
    std::lock_guard lock(state_mutex_);
    return static_cast<uint8_t>(status_ | (broken_ ? kStatusNeedsReset : 0));
}

bool VirtioPciLegacy::broken() const {
    std::lock_guard lock(state_mutex_);
    return broken_;
}

size_t VirtioPciLegacy::eventfd_count() const {
    std::lock_guard lock(eventfd_mutex_);
    return registrations_.size();
}

// --- Guest accesses -------------------------------------------------------

void VirtioPciLegacy::read(uint64_t offset, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), uint8_t{0});
    for (const Register& reg : kRegisters) {
        const Overlap part = overlap(offset, data.size(), reg.offset, reg.width);
        if (part.length == 0) continue;
        const uint32_t value = read_register(reg.offset);
        for (uint64_t address = part.start; address < part.start + part.length; ++address)
            data[address - offset] = static_cast<uint8_t>(value >> (8 * (address - reg.offset)));
    }
    const Overlap part = overlap(offset, data.size(), kConfig, config_size_);
    if (part.length != 0) {
        std::lock_guard lock(device_mutex_);
        device_.read_config(static_cast<uint32_t>(part.start - kConfig),
                            data.subspan(part.start - offset, part.length));
    }
}

void VirtioPciLegacy::write(uint64_t offset, std::span<const uint8_t> data) {
    for (const Register& reg : kRegisters) {
        // Only a write that covers the register's first byte reaches it.
        if (reg.offset < offset || reg.offset >= offset + data.size()) continue;
        const Overlap part = overlap(offset, data.size(), reg.offset, reg.width);
        uint32_t value = 0;
        for (uint64_t i = 0; i < part.length; ++i) value |= uint32_t{data[part.start - offset + i]} << (8 * i);
        write_register(reg.offset, value);
    }
    const Overlap part = overlap(offset, data.size(), kConfig, config_size_);
    if (part.length != 0) {
        std::lock_guard lock(device_mutex_);
        device_.write_config(static_cast<uint32_t>(part.start - kConfig),
                             data.subspan(part.start - offset, part.length));
    }
}

uint32_t VirtioPciLegacy::read_register(uint32_t offset) {
    switch (offset) {
        case kHostFeatures: return static_cast<uint32_t>(device_features_);  // legacy: low 32 bits only
        case kGuestFeatures: {
            std::lock_guard lock(device_mutex_);
            return guest_features_;
        }
        case kQueuePfn: {
            std::lock_guard lock(device_mutex_);
            return queue_select_ < queues_.size() ? queues_[queue_select_].pfn() : 0;
        }
        case kQueueSize: {
            std::lock_guard lock(device_mutex_);
            return queue_select_ < queue_sizes_.size() ? queue_sizes_[queue_select_] : 0;
        }
        case kQueueSelect: {
            std::lock_guard lock(device_mutex_);
            return queue_select_;
        }
        case kStatus: return status();
        case kIsr: return read_isr();
        default: return 0;  // queue notify is write-only
    }
}

void VirtioPciLegacy::write_register(uint32_t offset, uint32_t value) {
    switch (offset) {
        case kGuestFeatures: {
            std::lock_guard lock(device_mutex_);
            if (activated_) {
                log_once(Once::FeaturesWhileActive, "guest features written after DRIVER_OK; ignored");
                return;
            }
            // A driver can only accept what was offered.
            guest_features_ = value & static_cast<uint32_t>(device_features_);
            for (VirtQueue& queue : queues_) queue.set_features(guest_features_);
            return;
        }
        case kQueuePfn: {
            std::lock_guard lock(device_mutex_);
            write_queue_pfn(value);
            return;
        }
        case kQueueSelect: {
            std::lock_guard lock(device_mutex_);
            queue_select_ = static_cast<uint16_t>(value);
            return;
        }
        case kQueueNotify: notify_queue(value); return;
        case kStatus: write_status(static_cast<uint8_t>(value)); return;
        default:
            log_once(Once::ReadOnlyWrite,
                     fmt::format("write of {:#x} to read-only register at offset {}; ignored", value, offset));
            return;
    }
}

void VirtioPciLegacy::write_queue_pfn(uint32_t pfn) {
    if (queue_select_ >= queues_.size()) {
        log_once(Once::PfnNoQueue, fmt::format("queue PFN written for queue {}, which does not exist; ignored",
                                               queue_select_));
        return;
    }
    if (activated_) {
        log_once(Once::PfnWhileActive, "queue PFN written after DRIVER_OK; ignored");
        return;
    }
    VirtQueue& queue = queues_[queue_select_];
    if (pfn == 0) {
        queue.reset();  // the legacy driver releasing the queue
        return;
    }
    if (!queue.configure(pfn, queue_sizes_[queue_select_]))
        mark_broken(fmt::format("queue {} at PFN {:#x}: {}", queue_select_, pfn, queue.broken_reason()));
}

void VirtioPciLegacy::write_status(uint8_t value) {
    std::lock_guard lock(device_mutex_);
    if (value == 0) {
        reset_locked();
        return;
    }
    bool broken = false;
    {
        std::lock_guard state(state_mutex_);
        status_ = static_cast<uint8_t>(value & ~kStatusNeedsReset);  // that bit is the device's to set
        broken = broken_;
    }
    if ((value & kStatusDriverOk) == 0 || activated_ || broken) return;

    constexpr uint8_t kHandshake = kStatusAcknowledge | kStatusDriver;
    if ((value & kHandshake) != kHandshake)
        spdlog::debug("{}: DRIVER_OK without ACKNOWLEDGE|DRIVER (status {:#04x}); accepted", name_, value);
    activated_ = true;
    {
        std::lock_guard state(state_mutex_);
        running_ = true;  // before activate(): the device may signal from inside it
    }
    spdlog::debug("{}: activated with features {:#010x}", name_, guest_features_);
    device_.activate(guest_features_, queues_, *this);
}

void VirtioPciLegacy::reset_locked() {
    {
        std::lock_guard state(state_mutex_);
        running_ = false;  // drop signals the device's threads race with its reset
    }
    device_.reset();
    for (VirtQueue& queue : queues_) {
        queue.reset();
        queue.set_features(0);
    }
    guest_features_ = 0;
    queue_select_ = 0;
    activated_ = false;

    std::lock_guard state(state_mutex_);
    status_ = 0;
    isr_ = 0;
    broken_ = false;
    if (intx_asserted_ && intx_ != nullptr) intx_->set_level(false);
    intx_asserted_ = false;
}

void VirtioPciLegacy::notify_queue(uint32_t index) {
    std::lock_guard lock(device_mutex_);
    if (index >= queues_.size()) {
        log_once(Once::NotifyNoQueue, fmt::format("notify for queue {}, which does not exist; ignored", index));
        return;
    }
    if (!queues_[index].ready()) {
        log_once(Once::NotifyNotReady, fmt::format("notify for queue {}, which is not set up; ignored", index));
        return;
    }
    if (!activated_) {
        spdlog::trace("{}: notify for queue {} before DRIVER_OK; ignored", name_, index);
        return;
    }
    {
        std::lock_guard state(state_mutex_);
        if (!running_) return;  // broken: serve nothing until reset
    }
    device_.queue_notified(index);
}

uint8_t VirtioPciLegacy::read_isr() {
    std::lock_guard lock(state_mutex_);
    const uint8_t value = isr_;
    isr_ = 0;
    if (intx_asserted_ && intx_ != nullptr) intx_->set_level(false);
    intx_asserted_ = false;
    return value;
}

void VirtioPciLegacy::log_once(Once what, std::string_view message) {
    const unsigned bit = 1u << static_cast<unsigned>(what);
    if ((logged_once_.fetch_or(bit) & bit) != 0) return;
    spdlog::warn("{}: {} (logged once)", name_, message);
}

// --- Signals from the device ----------------------------------------------

void VirtioPciLegacy::raise_locked(uint8_t isr_bits) {
    isr_ |= isr_bits;
    if (intx_asserted_ || intx_ == nullptr) return;
    intx_->set_level(true);
    intx_asserted_ = true;
}

void VirtioPciLegacy::signal_used_buffer() {
    std::lock_guard lock(state_mutex_);
    if (running_) raise_locked(kIsrQueue);
}

void VirtioPciLegacy::signal_config_change() {
    std::lock_guard lock(state_mutex_);
    if (running_) raise_locked(kIsrConfig);
}

void VirtioPciLegacy::signal_device_broken(std::string_view reason) { mark_broken(reason); }

void VirtioPciLegacy::mark_broken(std::string_view reason) {
    std::lock_guard lock(state_mutex_);
    if (broken_) return;
    broken_ = true;
    running_ = false;
    spdlog::warn("{}: device needs reset: {}", name_, reason);
    // virtio 1.2 2.1.2: after DEVICE_NEEDS_RESET with DRIVER_OK set, the
    // device sends a configuration change notification.
    if ((status_ & kStatusDriverOk) != 0) raise_locked(kIsrConfig);
}

// --- Ioeventfds ------------------------------------------------------------

void VirtioPciLegacy::bar_mapping_changed(unsigned index, std::optional<uint32_t> base) {
    if (index != 0 || eventfds_ == nullptr) return;
    std::lock_guard lock(eventfd_mutex_);
    unregister_eventfds();
    if (base) register_eventfds(*base);
}

void VirtioPciLegacy::register_eventfds(uint32_t base) {
    const auto port = static_cast<uint16_t>(base + kQueueNotify);
    try {
        for (size_t i = 0; i < queues_.size(); ++i) {
            const auto queue = static_cast<uint16_t>(i);
            UniqueFd fd = eventfds_->add_io_eventfd(port, 2, queue);
            const int raw = fd.get();
            try {
                eventfds_->watch(raw, [this, raw, queue] {
                    uint64_t count = 0;
                    // One read empties the counter; EAGAIN means a spurious wakeup.
                    if (::read(raw, &count, sizeof count) != static_cast<ssize_t>(sizeof count)) return;
                    notify_queue(queue);
                });
            } catch (...) {
                eventfds_->remove_io_eventfd(raw, port, 2, queue);
                throw;
            }
            registrations_.push_back(Registration{std::move(fd), port, queue});
        }
        spdlog::debug("{}: {} queue notify eventfds on port {:#x}", name_, registrations_.size(), port);
    } catch (const std::exception& error) {
        // Not fatal: without the eventfds kicks trap and arrive through write().
        spdlog::warn("{}: no notify eventfds on port {:#x} ({}); kicks take the slow path", name_, port,
                     error.what());
        unregister_eventfds();
    }
}

void VirtioPciLegacy::unregister_eventfds() {
    for (Registration& registration : registrations_) {
        try {
            eventfds_->unwatch(registration.fd.get());
            eventfds_->remove_io_eventfd(registration.fd.get(), registration.port, 2, registration.queue);
        } catch (const std::exception& error) {
            spdlog::warn("{}: removing the notify eventfd of queue {}: {}", name_, registration.queue, error.what());
        }
    }
    registrations_.clear();
}

}  // namespace minikvm
