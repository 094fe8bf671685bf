#include "virtio/virtio_console.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "virtio/split_ring.h"

namespace minikvm {

namespace {

constexpr uint64_t bit(unsigned n) { return uint64_t{1} << n; }

void put_le16(std::array<uint8_t, VirtioConsole::kConfigSize>& bytes, uint32_t offset, uint16_t value) {
    bytes[offset] = static_cast<uint8_t>(value);
    bytes[offset + 1] = static_cast<uint8_t>(value >> 8);
}

}  // namespace

VirtioConsole::VirtioConsole(std::string name, Output output, std::optional<TerminalSize> size,
                             EventSources* poll_with)
    : name_(std::move(name)),
      output_(std::move(output)),
      features_((size ? bit(kFeatureSize) : 0) | bit(kFeatureEmergWrite) |
                bit(split_ring::kFeatureIndirectDesc) | bit(split_ring::kFeatureEventIdx)),
      poll_with_(poll_with) {
    if (size) size_ = *size;
    if (poll_with_) poll_with_->add_poller(*this);
}

VirtioConsole::~VirtioConsole() {
    if (poll_with_) poll_with_->remove_poller(*this);
}

void VirtioConsole::begin_polling() {
    std::lock_guard lock(device_lock());
    if (!queues_.empty() && queues_[kTransmitQueue].ready()) queues_[kTransmitQueue].disable_notifications();
}

bool VirtioConsole::poll() {
    std::lock_guard lock(device_lock());
    if (queues_.empty() || !queues_[kTransmitQueue].has_available()) return false;
    transmit_all();
    return true;
}

bool VirtioConsole::end_polling() {
    std::lock_guard lock(device_lock());
    if (queues_.empty()) return false;
    VirtQueue& queue = queues_[kTransmitQueue];
    // The re-check after the switch: output queued just before it got no kick.
    if (!queue.enable_notifications()) return false;
    transmit_all();
    return true;
}

void VirtioConsole::read_config(uint32_t offset, std::span<uint8_t> data) {
    std::array<uint8_t, kConfigSize> bytes{};
    put_le16(bytes, kConfigCols, size_.columns);
    put_le16(bytes, kConfigRows, size_.rows);
    bytes[kConfigMaxPorts] = 1;  // meaningful only with MULTIPORT; 1 is the truth anyway
    // emerg_wr is write-only: reads give 0.
    std::copy_n(bytes.begin() + offset, data.size(), data.begin());
}

void VirtioConsole::write_config(uint32_t offset, std::span<const uint8_t> data) {
    // Only the first byte of emerg_wr means anything: the character to
    // output. Everything else in this space is read-only.
    if (offset > kConfigEmergWrite || offset + data.size() <= kConfigEmergWrite) {
        malformed(fmt::format("write to read-only configuration byte {}; ignored", offset));
        return;
    }
    const uint8_t character = data[kConfigEmergWrite - offset];
    ++bytes_transmitted_;
    output_(std::span<const uint8_t>(&character, 1));
}

void VirtioConsole::activate(uint64_t negotiated_features, std::span<VirtQueue> queues,
                             VirtioTransportSignals& signals) {
    queues_ = queues;
    signals_ = &signals;
    negotiated_ = negotiated_features;
    // A legacy driver may have queued output and kicked before DRIVER_OK.
    transmit_all();
}

void VirtioConsole::reset() {
    queues_ = {};
    signals_ = nullptr;
    negotiated_ = 0;
}

void VirtioConsole::queue_notified(unsigned index) {
    if (queues_.empty()) return;
    // A receive-queue kick only says buffers were posted; input that waits
    // for them is offered again by ConsoleInput, so there is nothing to do.
    if (index == kTransmitQueue) transmit_all();
}

void VirtioConsole::transmit_all() {
    VirtQueue& queue = queues_[kTransmitQueue];
    if (!queue.ready()) return;
    bool completed = false;
    while (auto chain = queue.pop()) {
        if (!chain->writable.empty())
            malformed(fmt::format("transmit chain at head {} has {} device-writable buffers; output dropped",
                                  chain->head, chain->writable.size()));
        else
            for (const ReadableBuffer& buffer : chain->readable) {
                output_(buffer.bytes);
                bytes_transmitted_ += buffer.bytes.size();
            }
        // The device writes nothing into transmit buffers.
        queue.push(chain->head, 0);
        completed = true;
    }
    report_if_broken(queue);
    if (completed && queue.needs_interrupt()) signals_->signal_used_buffer(queue);
}

size_t VirtioConsole::receive(std::span<const uint8_t> bytes) {
    std::lock_guard lock(device_lock());
    if (queues_.empty()) return 0;
    VirtQueue& queue = queues_[kReceiveQueue];
    if (!queue.ready()) return 0;
    size_t taken = 0;
    bool completed = false;
    while (taken < bytes.size()) {
        auto chain = queue.pop();
        if (!chain) break;
        size_t written = 0;
        if (chain->writable.empty())
            malformed(fmt::format("receive chain at head {} has no device-writable buffer", chain->head));
        else
            written = chain->write(0, bytes.subspan(taken));
        queue.push(chain->head, static_cast<uint32_t>(written));
        taken += written;
        completed = true;
    }
    bytes_received_ += taken;
    report_if_broken(queue);
    if (completed && queue.needs_interrupt()) signals_->signal_used_buffer(queue);
    return taken;
}

void VirtioConsole::flush_output() {
    std::lock_guard lock(device_lock());
    if (!queues_.empty()) transmit_all();
}

void VirtioConsole::set_size(TerminalSize size) {
    if ((features_ & bit(kFeatureSize)) == 0) return;
    std::lock_guard lock(device_lock());
    if (size.columns == size_.columns && size.rows == size_.rows) return;
    size_ = size;
    // The driver rereads cols/rows on a configuration change (5.3.6).
    if (signals_ != nullptr && (negotiated_ & bit(kFeatureSize)) != 0) signals_->signal_config_change();
}

void VirtioConsole::report_if_broken(VirtQueue& queue) {
    if (queue.broken()) signals_->signal_device_broken(queue.broken_reason());
}

void VirtioConsole::malformed(std::string_view what) {
    malformed_requests_.fetch_add(1, std::memory_order_relaxed);
    malformed_log_.log(spdlog::level::warn, fmt::format("{}: {}", name_, what));
}

uint64_t VirtioConsole::bytes_transmitted() const {
    std::lock_guard lock(device_lock());
    return bytes_transmitted_;
}

uint64_t VirtioConsole::bytes_received() const {
    std::lock_guard lock(device_lock());
    return bytes_received_;
}

uint64_t VirtioConsole::malformed_requests() const { return malformed_requests_.load(std::memory_order_relaxed); }

}  // namespace minikvm
