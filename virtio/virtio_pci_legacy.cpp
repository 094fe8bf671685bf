#include "virtio/virtio_pci_legacy.h"

#include <unistd.h>

#include <algorithm>
#include <exception>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "virtio/driver_hints.h"
#include "virtio/split_ring.h"

namespace minikvm {

namespace {

// The register block, for splitting an access of any width into registers.
struct Register {
    uint32_t offset;
    uint32_t width;
    const char* name;  // for traces
};
constexpr Register kRegisters[] = {
    {VirtioPciLegacy::kHostFeatures, 4, "host_features"},
    {VirtioPciLegacy::kGuestFeatures, 4, "guest_features"},
    {VirtioPciLegacy::kQueuePfn, 4, "queue_pfn"},
    {VirtioPciLegacy::kQueueSize, 2, "queue_size"},
    {VirtioPciLegacy::kQueueSelect, 2, "queue_select"},
    {VirtioPciLegacy::kQueueNotify, 2, "queue_notify"},
    {VirtioPciLegacy::kStatus, 1, "status"},
    {VirtioPciLegacy::kIsr, 1, "isr"},
    // Present only while MSI-X is enabled: the first 8 above, or all 10.
    {VirtioPciLegacy::kMsiConfigVector, 2, "msix_config_vector"},
    {VirtioPciLegacy::kMsiQueueVector, 2, "msix_queue_vector"},
};
constexpr size_t kRegistersWithoutMsix = 8;

std::span<const Register> registers(bool msix) {
    return std::span<const Register>(kRegisters).first(msix ? std::size(kRegisters) : kRegistersWithoutMsix);
}

uint32_t config_offset(bool msix) { return msix ? VirtioPciLegacy::kConfigWithMsix : VirtioPciLegacy::kConfig; }

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

// What an access covers, for its trace: "status", "queue_notify+status+isr",
// "config+4" (the first configuration byte it touches).
std::string covered_registers(uint64_t offset, uint64_t length, bool msix) {
    std::string names;
    for (const Register& reg : registers(msix)) {
        if (overlap(offset, length, reg.offset, reg.width).length == 0) continue;
        if (!names.empty()) names += '+';
        names += reg.name;
    }
    const uint64_t kConfig = config_offset(msix);
    if (offset + length > kConfig) {
        if (!names.empty()) names += '+';
        names += fmt::format("config+{}", std::max(offset, kConfig) - kConfig);
    }
    return names;
}

const char* yes_no(bool value) { return value ? "yes" : "no"; }

// Each line of `lines` with "name " in front.
std::string prefixed_lines(std::string_view name, std::string_view lines) {
    std::string out;
    for (size_t start = 0; start < lines.size();) {
        size_t end = lines.find('\n', start);
        if (end == std::string::npos) end = lines.size();
        out += fmt::format("{} {}\n", name, lines.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

uint32_t validated_config_bar_size(const VirtioDevice& device, bool msix) {
    const uint32_t config_size = device.config_size();
    if (config_size > PciConfigSpace::kMaxIoBarSize - config_offset(msix))
        throw std::invalid_argument(
            fmt::format("virtio-pci: {} bytes of device configuration do not fit a legacy I/O BAR", config_size));
    return VirtioPciLegacy::bar_size_for(config_size, msix);
}

const char* signal_result_name(MsixTable::Signal result) {
    switch (result) {
        case MsixTable::Signal::Delivered: return "delivered";
        case MsixTable::Signal::Pending: return "pending (masked)";
        case MsixTable::Signal::Disabled: return "dropped: MSI-X disabled";
        case MsixTable::Signal::Refused: return "refused";
    }
    return "?";
}

}  // namespace

PciIdentity VirtioPciLegacy::identity_for(const VirtioDeviceKind& kind) {
    // Transitional device IDs (virtio 1.2 4.1.2.1) are 0x1000..0x103f.
    if (kind.pci_device_id < 0x1000 || kind.pci_device_id > 0x103f)
        throw std::invalid_argument(fmt::format("virtio-pci: {:#06x} is no transitional PCI device ID (virtio {})",
                                                kind.pci_device_id, kind.name));
    return PciIdentity{.vendor_id = kVendorId,
                       .device_id = kind.pci_device_id,
                       .class_code = kind.pci_class,
                       .revision = 0,  // legacy drivers (virtio_pci_legacy) require revision 0
                       .subsystem_vendor_id = kVendorId,
                       .subsystem_id = static_cast<uint16_t>(kind.type)};
}

uint32_t VirtioPciLegacy::bar_size_for(uint32_t config_size, bool msix) {
    uint32_t size = kMinBarSize;
    while (size < config_offset(msix) + uint64_t{config_size}) size <<= 1;
    return size;
}

VirtioPciLegacy::VirtioPciLegacy(VirtioDevice& device, const GuestMemory& memory, std::string name,
                                 NotifyEventfds* eventfds, EventSources* events, MsiSender* msix)
    : device_(device),
      name_(std::move(name)),
      kind_(device.kind()),
      device_features_(device.device_features()),
      config_size_(device.config_size()),
      config_(identity_for(device.kind())),
      bar_size_(validated_config_bar_size(device, msix != nullptr)),
      eventfds_(eventfds),
      events_(events),
      msi_sender_(msix),
      device_mutex_(device.device_lock()) {
    if ((eventfds == nullptr) != (events == nullptr))
        throw std::invalid_argument(fmt::format("{}: notify eventfds need event sources to hear them", name_));
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
        queues_.emplace_back(memory, fmt::format("{} q{}", name_, i), VirtQueueOptions{.trace = &trace_});
    }
    queue_vectors_.assign(count, kNoVector);
    if (msix != nullptr) {
        // One vector per queue and one for configuration changes, as Linux asks for.
        const unsigned vectors = std::min<unsigned>(count + 1, MsixTable::kMaxVectors);
        msix_ = std::make_unique<MsixCapability>(
            config_, kMsixBar, static_cast<uint16_t>(vectors),
            [msix](uint16_t vector, const MsiMessage& message) { msix->send(vector, message); },
            [this](uint16_t vector, const MsiMessage& message) { msix_refused(vector, message); }, name_, &trace_);
    }
}

VirtioPciLegacy::~VirtioPciLegacy() {
    {
        std::lock_guard lock(eventfd_mutex_);
        unregister_eventfds();
    }
    // The device must stop using the queues before they go away. The INTx
    // line is left as it is: whoever owns it may be gone already (the PCI
    // bridge, at the end of a run), and nobody listens any more.
    std::lock_guard lock(device_mutex_);
    {
        std::lock_guard state(state_mutex_);
        intx_ = nullptr;
    }
    reset_locked();
}

std::vector<PciBar> VirtioPciLegacy::bars() {
    std::vector<PciBar> bars{PciBar{.index = 0, .kind = PciBarKind::Io, .size = bar_size_, .handler = *this}};
    if (msix_)
        bars.push_back(
            PciBar{.index = kMsixBar, .kind = PciBarKind::Memory32, .size = msix_->bar_size(), .handler = *msix_});
    return bars;
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

void VirtioPciLegacy::pci_address_assigned(PciBdf address) {
    std::lock_guard lock(state_mutex_);
    pci_address_ = address;
}

std::optional<PciBdf> VirtioPciLegacy::pci_address() const {
    std::lock_guard lock(state_mutex_);
    return pci_address_;
}

std::string VirtioPciLegacy::who() const {
    const std::optional<PciBdf> address = pci_address();
    return address ? fmt::format("{} {}", name_, address->to_string()) : name_;
}

// --- Guest accesses -------------------------------------------------------

void VirtioPciLegacy::read(uint64_t offset, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), uint8_t{0});
    const bool msix = msix_enabled();  // where the registers end and the configuration starts
    for (const Register& reg : registers(msix)) {
        const Overlap part = overlap(offset, data.size(), reg.offset, reg.width);
        if (part.length == 0) continue;
        const uint32_t value = read_register(reg.offset);
        for (uint64_t address = part.start; address < part.start + part.length; ++address)
            data[address - offset] = static_cast<uint8_t>(value >> (8 * (address - reg.offset)));
    }
    const uint32_t config = config_offset(msix);
    const Overlap part = overlap(offset, data.size(), config, config_size_);
    if (part.length != 0) {
        std::lock_guard lock(device_mutex_);
        device_.read_config(static_cast<uint32_t>(part.start - config), data.subspan(part.start - offset, part.length));
    }
    if (trace()) trace_access("read ", offset, data, msix);
}

void VirtioPciLegacy::write(uint64_t offset, std::span<const uint8_t> data) {
    const bool msix = msix_enabled();
    // Before the effects, so the lines it causes (status, activate...) follow it.
    if (trace()) trace_access("write", offset, data, msix);
    for (const Register& reg : registers(msix)) {
        // Only a write that covers the register's first byte reaches it.
        if (reg.offset < offset || reg.offset >= offset + data.size()) continue;
        const Overlap part = overlap(offset, data.size(), reg.offset, reg.width);
        uint32_t value = 0;
        for (uint64_t i = 0; i < part.length; ++i) value |= uint32_t{data[part.start - offset + i]} << (8 * i);
        write_register(reg.offset, value);
    }
    const uint32_t config = config_offset(msix);
    const Overlap part = overlap(offset, data.size(), config, config_size_);
    if (part.length != 0) {
        std::lock_guard lock(device_mutex_);
        device_.write_config(static_cast<uint32_t>(part.start - config),
                             data.subspan(part.start - offset, part.length));
    }
}

void VirtioPciLegacy::trace_access(const char* direction, uint64_t offset, std::span<const uint8_t> data,
                                   bool msix) const {
    uint64_t value = 0;
    for (size_t i = 0; i < data.size() && i < sizeof value; ++i) value |= uint64_t{data[i]} << (8 * i);
    spdlog::info("trace {} {} off={} {} len={} val={:#0{}x}", name_, direction, offset,
                 covered_registers(offset, data.size(), msix), data.size(), value, 2 + 2 * data.size());
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
        case kMsiConfigVector: return config_vector();
        case kMsiQueueVector: {
            std::lock_guard lock(device_mutex_);
            return queue_vector(queue_select_);
        }
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
        case kQueueNotify: notify_queue(value, KickPath::Trap); return;
        case kStatus: write_status(static_cast<uint8_t>(value)); return;
        case kMsiConfigVector: {
            const uint16_t vector = checked_vector(static_cast<uint16_t>(value));
            std::lock_guard state(state_mutex_);
            config_vector_ = vector;
            if (trace()) spdlog::info("trace {} msix config vector {:#x}", name_, vector);
            return;
        }
        case kMsiQueueVector: {
            const uint16_t vector = checked_vector(static_cast<uint16_t>(value));
            std::lock_guard lock(device_mutex_);
            if (queue_select_ >= queue_vectors_.size()) {
                log_once(Once::VectorOutOfRange,
                         fmt::format("MSI-X vector written for queue {}, which does not exist; ignored", queue_select_));
                return;
            }
            std::lock_guard state(state_mutex_);
            queue_vectors_[queue_select_] = vector;
            if (trace()) spdlog::info("trace {} msix q{} vector {:#x}", name_, queue_select_, vector);
            return;
        }
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
    uint8_t old_status = 0;
    {
        std::lock_guard state(state_mutex_);
        old_status = status_;
        status_ = static_cast<uint8_t>(value & ~kStatusNeedsReset);  // that bit is the device's to set
        status_seen_ |= status_;
        broken = broken_;
    }
    if (trace())
        spdlog::info("trace {} status {:#04x} -> {:#04x} {}", name_, old_status, value, device_status::names(value));
    if ((value & kStatusDriverOk) == 0 || activated_) return;
    if (broken) {
        if (trace()) spdlog::info("trace {} DRIVER_OK ignored: device needs reset", name_);
        return;
    }

    constexpr uint8_t kHandshake = kStatusAcknowledge | kStatusDriver;
    if ((value & kHandshake) != kHandshake)
        spdlog::debug("{}: DRIVER_OK without ACKNOWLEDGE|DRIVER (status {:#04x}); accepted", name_, value);
    activated_ = true;
    {
        std::lock_guard state(state_mutex_);
        running_ = true;  // before activate(): the device may signal from inside it
    }
    spdlog::debug("{}: activated with features {:#010x}", name_, guest_features_);
    if (trace()) {
        std::string ready;
        for (size_t i = 0; i < queues_.size(); ++i)
            if (queues_[i].ready()) ready += fmt::format("{}q{}", ready.empty() ? "" : ",", i);
        spdlog::info("trace {} activate features={:#010x} queues={}", name_, guest_features_,
                     ready.empty() ? "none" : ready);
    }
    device_.activate(guest_features_, queues_, *this);
}

void VirtioPciLegacy::reset_locked() {
    {
        std::lock_guard state(state_mutex_);
        running_ = false;  // drop signals the device's threads race with its reset
        if (trace()) spdlog::info("trace {} reset status was {:#04x}", name_, status_);
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
    // The mapping is virtio state; the MSI-X table itself is PCI state and
    // stays, but what was pending belonged to the device before the reset.
    config_vector_ = kNoVector;
    std::fill(queue_vectors_.begin(), queue_vectors_.end(), kNoVector);
    if (msix_) msix_->table().clear_pending();
    broken_ = false;
    broken_reason_.clear();
    lower_locked("reset");
}

void VirtioPciLegacy::notify_queue(uint32_t index, KickPath path) {
    const char* const path_name = path == KickPath::Eventfd ? "eventfd" : "trap";
    const auto trace_ignored = [&](std::string_view why) {
        if (trace()) spdlog::info("trace {} notify q={} {} ignored: {}", name_, index, path_name, why);
    };
    std::lock_guard lock(device_mutex_);
    if (index >= queues_.size()) {
        trace_ignored("no such queue");
        log_once(Once::NotifyNoQueue, fmt::format("notify for queue {}, which does not exist; ignored", index));
        return;
    }
    if (!queues_[index].ready()) {
        trace_ignored("queue not set up");
        log_once(Once::NotifyNotReady, fmt::format("notify for queue {}, which is not set up; ignored", index));
        return;
    }
    if (!activated_) {
        trace_ignored("before DRIVER_OK");
        spdlog::trace("{}: notify for queue {} before DRIVER_OK; ignored", name_, index);
        return;
    }
    {
        std::lock_guard state(state_mutex_);
        if (!running_) {  // broken: serve nothing until reset
            trace_ignored("device needs reset");
            return;
        }
    }
    if (trace()) spdlog::info("trace {} notify q={} {}", name_, index, path_name);
    device_.queue_notified(index);
}

uint8_t VirtioPciLegacy::read_isr() {
    std::lock_guard lock(state_mutex_);
    const uint8_t value = isr_;
    isr_ = 0;
    lower_locked("isr-read");
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
    if (intx_asserted_ || intx_ == nullptr) {
        if (trace())
            spdlog::info("trace {} irq isr={:#x} {}", name_, isr_,
                         intx_ == nullptr ? "no INTx line" : "already raised");
        return;
    }
    intx_->set_level(true);
    intx_asserted_ = true;
    if (trace()) spdlog::info("trace {} irq raise isr={:#x}", name_, isr_);
}

void VirtioPciLegacy::lower_locked(std::string_view why) {
    if (intx_asserted_ && intx_ != nullptr) {
        intx_->set_level(false);
        if (trace()) spdlog::info("trace {} irq lower {}", name_, why);
    }
    intx_asserted_ = false;
}

void VirtioPciLegacy::signal_used_buffer(const VirtQueue& queue) {
    std::lock_guard lock(state_mutex_);
    if (!running_) {
        if (trace()) spdlog::info("trace {} irq used-buffer dropped: device not running", name_);
        return;
    }
    if (!msix_enabled_) {
        raise_locked(kIsrQueue);
        return;
    }
    // The device passes one of the queues it was given: find its index.
    const auto index = static_cast<size_t>(&queue - queues_.data());
    if (&queue < queues_.data() || index >= queue_vectors_.size()) {
        spdlog::error("{}: used-buffer signal for a queue that is not this device's; dropped", name_);
        return;
    }
    signal_vector_locked(queue_vectors_[index], "used-buffer");
}

void VirtioPciLegacy::signal_config_change() {
    std::lock_guard lock(state_mutex_);
    if (!running_) {
        if (trace()) spdlog::info("trace {} irq config-change dropped: device not running", name_);
        return;
    }
    if (msix_enabled_) {
        isr_ |= kIsrConfig;  // 4.1.4.5.1: set before every config notification, MSI-X or not
        signal_vector_locked(config_vector_, "config-change");
    } else {
        raise_locked(kIsrConfig);
    }
}

void VirtioPciLegacy::signal_vector_locked(uint16_t vector, const char* what) {
    if (vector == kNoVector) {
        // virtio 1.2 4.1.5.3/4: with MSI-X on and no vector mapped, no interrupt.
        if (trace()) spdlog::info("trace {} irq {} not sent: no MSI-X vector mapped", name_, what);
        return;
    }
    const MsixTable::Signal result = msix_->table().signal(vector);
    if (trace()) spdlog::info("trace {} irq {} msix vector {} {}", name_, what, vector, signal_result_name(result));
}

uint16_t VirtioPciLegacy::checked_vector(uint16_t vector) {
    if (vector == kNoVector || (msix_ && vector < msix_->vectors())) return vector;
    log_once(Once::VectorOutOfRange, fmt::format("MSI-X vector {} mapped, but the table has {} vectors; reads back as "
                                                 "NO_VECTOR, no interrupt for it",
                                                 vector, msix_ ? msix_->vectors() : 0));
    return kNoVector;
}

void VirtioPciLegacy::msix_refused(uint16_t vector, const MsiMessage& message) {
    log_once(Once::MsixRefused,
             fmt::format("MSI-X vector {} holds address {:#x} data {:#x}, which is not an x86 interrupt message; "
                         "not delivered",
                         vector, message.address, message.data));
}

void VirtioPciLegacy::config_written(uint32_t offset, uint32_t length) {
    if (!msix_) return;
    std::lock_guard lock(state_mutex_);  // before the table's lock, as on the signal path
    if (!msix_->config_written(offset, length)) return;
    msix_enabled_ = msix_->enabled();
    if (trace()) spdlog::info("trace {} msix {}", name_, msix_enabled_ ? "enabled" : "disabled");
    // With MSI-X on, the function must not assert INTx (PCI 3.0 6.8.2);
    // back on INTx, a condition still in the ISR asserts it again.
    if (msix_enabled_) lower_locked("msix-enabled");
    else if (isr_ != 0) raise_locked(0);
}

bool VirtioPciLegacy::msix_enabled() const {
    std::lock_guard lock(state_mutex_);
    return msix_enabled_;
}

uint16_t VirtioPciLegacy::config_vector() const {
    std::lock_guard lock(state_mutex_);
    return config_vector_;
}

uint16_t VirtioPciLegacy::queue_vector(unsigned index) const {
    std::lock_guard lock(state_mutex_);
    return index < queue_vectors_.size() ? queue_vectors_[index] : kNoVector;
}

void VirtioPciLegacy::signal_device_broken(std::string_view reason) { mark_broken(reason); }

void VirtioPciLegacy::mark_broken(std::string_view reason) {
    std::lock_guard lock(state_mutex_);
    if (broken_) return;
    broken_ = true;
    broken_reason_ = reason;
    running_ = false;
    spdlog::warn("{}: device needs reset: {}", name_, reason);
    // virtio 1.2 2.1.2: after DEVICE_NEEDS_RESET with DRIVER_OK set, the
    // device sends a configuration change notification.
    if ((status_ & kStatusDriverOk) == 0) return;
    if (msix_enabled_) {
        isr_ |= kIsrConfig;
        signal_vector_locked(config_vector_, "config-change");
    } else {
        raise_locked(kIsrConfig);
    }
}

// --- Diagnostics -----------------------------------------------------------

uint8_t VirtioPciLegacy::status_bits_ever_set() const {
    std::lock_guard lock(state_mutex_);
    return status_seen_;
}

uint32_t VirtioPciLegacy::chains_in_flight() const {
    std::lock_guard lock(device_mutex_);
    uint32_t total = 0;
    for (const VirtQueue& queue : queues_) total += queue.in_flight();
    return total;
}

bool VirtioPciLegacy::ever_reached_driver_ok() const { return (status_bits_ever_set() & kStatusDriverOk) != 0; }

std::optional<std::string> VirtioPciLegacy::never_driver_ok_warning() const {
    const uint8_t seen = status_bits_ever_set();
    if ((seen & kStatusDriverOk) != 0) return std::nullopt;
    return minikvm::never_driver_ok_warning(who(), kind_, seen);
}

std::string VirtioPciLegacy::state_report() const {
    const size_t eventfds = eventfd_count();  // its lock is never nested in the others
    std::lock_guard lock(device_mutex_);
    struct {
        uint8_t status, isr, seen;
        bool broken, intx_connected, intx_asserted;
        std::string reason;
        std::optional<PciBdf> address;
        uint16_t config_vector;
        std::vector<uint16_t> queue_vectors;
    } state;
    {
        std::lock_guard state_lock(state_mutex_);
        state = {status_,        isr_,         status_seen_, broken_,        intx_ != nullptr,
                 intx_asserted_, broken_reason_, pci_address_, config_vector_, queue_vectors_};
    }
    const uint8_t status = static_cast<uint8_t>(state.status | (state.broken ? kStatusNeedsReset : 0));

    std::string out;
    out += fmt::format("{} pci={} type={} status={:#04x} {} activated={} ever_driver_ok={}\n", name_,
                       state.address ? state.address->to_string() : "none", kind_.name, status,
                       device_status::names(status), yes_no(activated_), yes_no((state.seen & kStatusDriverOk) != 0));
    const uint32_t offered = static_cast<uint32_t>(device_features_);
    out += fmt::format("{} features offered={:#010x} negotiated={:#010x}", name_, offered, guest_features_);
    // A device offering bits a legacy driver cannot see is worth a note.
    if ((device_features_ >> 32) != 0) out += fmt::format(" unofferable_high={:#x}", device_features_ >> 32);
    out += '\n';
    out += fmt::format("{} isr={:#04x} intx={} kicks={}\n", name_, state.isr,
                       !state.intx_connected ? "unconnected" : state.intx_asserted ? "asserted" : "deasserted",
                       eventfds != 0 ? fmt::format("eventfd({})", eventfds) : std::string("trap"));
    out += state.broken ? fmt::format("{} broken=yes reason: {}\n", name_, state.reason)
                        : fmt::format("{} broken=no\n", name_);
    if (msix_) {
        const auto vector_name = [](uint16_t vector) {
            return vector == kNoVector ? std::string("none") : std::to_string(vector);
        };
        std::string queues;
        for (size_t i = 0; i < state.queue_vectors.size(); ++i)
            queues += fmt::format("{}q{}={}", i == 0 ? "" : ",", i, vector_name(state.queue_vectors[i]));
        out += fmt::format("{} msix config_vector={} queue_vectors={}\n", name_, vector_name(state.config_vector),
                           queues.empty() ? "none" : queues);
        out += prefixed_lines(name_, msix_->state_lines() + msi_sender_->state_lines());
    }

    // device_mutex_ is held: the device's own threads are not using the queues.
    {
        for (size_t i = 0; i < queues_.size(); ++i) {
            const VirtQueue& queue = queues_[i];
            out += fmt::format("{} q{} ", name_, i);
            if (!queue.ready() && !queue.broken()) {
                out += fmt::format("size={} not placed\n", queue_sizes_[i]);
                continue;
            }
            out += fmt::format("pfn={:#x} size={} next_avail={} seen_avail_idx={} used_idx={} in_flight={}",
                               queue.pfn(), queue.size(), queue.next_avail_index(), queue.last_seen_avail_index(),
                               queue.used_index(), queue.in_flight());
            if (const auto ring = queue.guest_ring_fields()) {
                out += fmt::format(" guest: avail.idx={} pending={} avail.flags={:#x} used.idx={} used.flags={:#x}",
                                   ring->avail_idx, static_cast<uint16_t>(ring->avail_idx - queue.next_avail_index()),
                                   ring->avail_flags, ring->used_idx, ring->used_flags);
                if (queue.event_idx())
                    out += fmt::format(" used_event={} avail_event={}", ring->used_event, ring->avail_event);
            }
            out += queue.broken() ? fmt::format(" broken=yes reason: {}\n", queue.broken_reason()) : " broken=no\n";
        }
    }
    out += prefixed_lines(name_, device_.state_lines());
    return out;
}

// --- Ioeventfds ------------------------------------------------------------

void VirtioPciLegacy::bar_mapping_changed(unsigned index, std::optional<uint64_t> base) {
    if (index != 0 || eventfds_ == nullptr) return;
    std::lock_guard lock(eventfd_mutex_);
    unregister_eventfds();
    if (base) register_eventfds(*base);
}

void VirtioPciLegacy::register_eventfds(uint64_t base) {
    const auto port = static_cast<uint16_t>(base + kQueueNotify);
    try {
        for (size_t i = 0; i < queues_.size(); ++i) {
            const auto queue = static_cast<uint16_t>(i);
            UniqueFd fd = eventfds_->add_io_eventfd(port, 2, queue);
            const int raw = fd.get();
            try {
                events_->watch(raw, EventSources::kReadable, [this, raw, queue](uint32_t) {
                    uint64_t count = 0;
                    // One read empties the counter; EAGAIN means a spurious wakeup.
                    if (::read(raw, &count, sizeof count) != static_cast<ssize_t>(sizeof count)) return;
                    notify_queue(queue, KickPath::Eventfd);
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
            events_->unwatch(registration.fd.get());
            eventfds_->remove_io_eventfd(registration.fd.get(), registration.port, 2, registration.queue);
        } catch (const std::exception& error) {
            spdlog::warn("{}: removing the notify eventfd of queue {}: {}", name_, registration.queue, error.what());
        }
    }
    registrations_.clear();
}

}  // namespace minikvm
