#include "virtio/virtio_net.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "virtio/split_ring.h"

namespace minikvm {

namespace {

constexpr uint64_t bit(unsigned n) { return uint64_t{1} << n; }

// The largest frame without segmentation offloads: a 1500-byte MTU behind
// an 802.1Q-tagged Ethernet header. Bigger ones still fit, by copying.
constexpr size_t kUsualFrame = 1500 + net::kEthernetHeader + 4;

// Copies the first out.size() bytes of a chain's device-writable stream
// (what the tap just wrote there) into `out`.
void read_written(const DescriptorChain& chain, std::span<uint8_t> out) {
    size_t done = 0;
    for (const WritableBuffer& buffer : chain.writable) {
        if (done == out.size()) break;
        const size_t piece = std::min(buffer.bytes.size(), out.size() - done);
        std::memcpy(out.data() + done, buffer.bytes.data(), piece);
        done += piece;
    }
}

std::string offload_names(unsigned offloads) {
    std::string names;
    const auto add = [&](unsigned flag, const char* name) {
        if ((offloads & flag) == 0) return;
        if (!names.empty()) names += ',';
        names += name;
    };
    add(NetBackend::kOffloadCsum, "csum");
    add(NetBackend::kOffloadTso4, "tso4");
    add(NetBackend::kOffloadTso6, "tso6");
    add(NetBackend::kOffloadTsoEcn, "tso_ecn");
    return names.empty() ? "none" : names;
}

}  // namespace

VirtioNet::VirtioNet(std::string name, std::unique_ptr<NetBackend> backend, MacAddress mac, EventSources& watcher)
    : name_(std::move(name)),
      backend_(std::move(backend)),
      watcher_(watcher),
      configured_mac_(mac),
      mac_(mac),
      // Room for the largest frame a tap can hand over, plus one byte to
      // tell a frame that filled everything from one cut short.
      rx_buffer_(net::kMergeableHeaderSize + net::kMaxFrame + 1) {
    watcher_.watch(backend_->fd(), 0, [this](uint32_t ready) { on_backend_ready(ready); });
    watcher_.add_poller(*this);
}

VirtioNet::~VirtioNet() {
    // After these no handler or poller call runs; nothing else here touches
    // guest memory.
    watcher_.remove_poller(*this);
    watcher_.unwatch(backend_->fd());
}

uint64_t VirtioNet::device_features() const {
    return bit(kFeatureCsum) | bit(kFeatureGuestCsum) | bit(kFeatureMac) | bit(kFeatureGuestTso4) |
           bit(kFeatureGuestTso6) | bit(kFeatureGuestEcn) | bit(kFeatureHostTso4) | bit(kFeatureHostTso6) |
           bit(kFeatureHostEcn) | bit(kFeatureMrgRxbuf) | bit(kFeatureStatus) | bit(split_ring::kFeatureIndirectDesc) |
           bit(split_ring::kFeatureEventIdx);
}

// --- Configuration space ----------------------------------------------------

void VirtioNet::read_config(uint32_t offset, std::span<uint8_t> data) {
    std::array<uint8_t, kConfigSize> bytes{};
    std::copy(mac_.bytes.begin(), mac_.bytes.end(), bytes.begin() + kConfigMac);
    // The link is up until the tap fails for good.
    bytes[kConfigStatus] = backend_failed_ ? 0 : static_cast<uint8_t>(kStatusLinkUp);
    bytes[kConfigStatus + 1] = 0;
    std::copy_n(bytes.begin() + offset, data.size(), data.begin());
}

void VirtioNet::write_config(uint32_t offset, std::span<const uint8_t> data) {
    // A legacy driver sets the MAC by writing it here, a byte at a time
    // (there is no control queue); the status is read-only.
    for (size_t i = 0; i < data.size(); ++i) {
        const uint32_t at = offset + static_cast<uint32_t>(i);
        if (at < kConfigMac + mac_.bytes.size()) mac_.bytes[at - kConfigMac] = data[i];
    }
    if (offset + data.size() > kConfigStatus)
        config_log_.log(spdlog::level::warn,
                        fmt::format("{}: {}-byte write to configuration offset {} reaches the read-only status; "
                                    "ignored there",
                                    name_, data.size(), offset));
    else
        spdlog::debug("{}: driver wrote the MAC: now {}", name_, mac_.to_string());
}

// --- Lifecycle ------------------------------------------------------------------

void VirtioNet::activate(uint64_t negotiated_features, std::span<VirtQueue> queues,
                         VirtioTransportSignals& signals) {
    const auto has = [&](unsigned feature) { return (negotiated_features & bit(feature)) != 0; };
    mergeable_ = has(kFeatureMrgRxbuf);
    header_size_ = net::header_size(mergeable_);
    tx_offloads_ = {.csum = has(kFeatureCsum),
                    .tso4 = has(kFeatureHostTso4),
                    .tso6 = has(kFeatureHostTso6),
                    .ecn = has(kFeatureHostEcn)};
    // The tap may hand over what the driver accepted: partial checksums,
    // and segmentation only on top of them (a tap ignores TSO without CSUM).
    unsigned offloads = 0;
    if (has(kFeatureGuestCsum)) {
        offloads |= NetBackend::kOffloadCsum;
        if (has(kFeatureGuestTso4)) offloads |= NetBackend::kOffloadTso4;
        if (has(kFeatureGuestTso6)) offloads |= NetBackend::kOffloadTso6;
        if (has(kFeatureGuestEcn) && (offloads & (NetBackend::kOffloadTso4 | NetBackend::kOffloadTso6)) != 0)
            offloads |= NetBackend::kOffloadTsoEcn;
    }
    try {
        backend_->set_header_size(static_cast<int>(header_size_));
    } catch (const std::system_error& error) {
        // Without it every frame would be misframed: better not to start.
        signals.signal_device_broken(
            fmt::format("{}: cannot set the {}-byte header on {}: {}", name_, header_size_, backend_->label(), error.what()));
        return;
    }
    try {
        backend_->set_offloads(offloads);
    } catch (const std::system_error& error) {
        spdlog::warn("{}: {} refused offloads {} ({}); receiving complete frames only", name_, backend_->label(),
                     offload_names(offloads), error.what());
        offloads = 0;
        try {
            backend_->set_offloads(0);
        } catch (const std::system_error&) {
            // Frames it still offloads fail the receive header check.
        }
    }
    tap_offloads_ = offloads;
    rx_offloads_ = {.csum = (offloads & NetBackend::kOffloadCsum) != 0,
                    .tso4 = (offloads & NetBackend::kOffloadTso4) != 0,
                    .tso6 = (offloads & NetBackend::kOffloadTso6) != 0,
                    .ecn = (offloads & NetBackend::kOffloadTsoEcn) != 0};
    rx_target_ = header_size_ +
                 ((offloads & (NetBackend::kOffloadTso4 | NetBackend::kOffloadTso6)) != 0 ? net::kMaxFrame : kUsualFrame);
    spdlog::debug("{}: activated: {}-byte header, tap offloads {}", name_, header_size_, offload_names(offloads));

    queues_ = queues;
    signals_ = &signals;
    rx_ring_may_have_buffers_ = true;
    // Kicks for buffers are only wanted once the ring runs dry.
    queues_[kReceiveQueue].disable_notifications();
    // A legacy driver may have queued frames and kicked before DRIVER_OK.
    transmit();
    receive();
}

void VirtioNet::reset() {
    drop_in_flight();
    queues_ = {};
    signals_ = nullptr;
    rx_ring_may_have_buffers_ = false;
    // A MAC the driver wrote is its own: the next driver starts from ours.
    mac_ = configured_mac_;
    update_interest();
    // The next driver may accept less: the tap must stop offloading now.
    if (tap_offloads_ != 0) {
        try {
            backend_->set_offloads(0);
        } catch (const std::system_error& error) {
            spdlog::warn("{}: turning the tap's offloads off: {}", name_, error.what());
        }
        tap_offloads_ = 0;
        rx_offloads_ = {};
    }
}

void VirtioNet::drop_in_flight() {
    // Chains the device holds are simply forgotten: after a reset the driver
    // expects nothing back. A frame half delivered is lost.
    if (rx_pending_) ++counters_.rx_dropped;
    rx_pending_.reset();
    rx_chains_.clear();
    rx_used_.clear();
    if (tx_blocked_) ++counters_.tx_dropped;
    tx_blocked_.reset();
    tx_used_.clear();
}

void VirtioNet::queue_notified(unsigned index) {
    if (queues_.empty()) return;
    if (index == kTransmitQueue) {
        transmit();
    } else if (index == kReceiveQueue) {
        resume_receive();
    }
}

// New receive buffers after a dry ring (a kick, or a poll that found them):
// no more kicks for buffers until the ring runs dry again, and the tap is
// read again.
void VirtioNet::resume_receive() {
    queues_[kReceiveQueue].disable_notifications();
    rx_ring_may_have_buffers_ = true;
    receive();
}

void VirtioNet::on_backend_ready(uint32_t ready) {
    std::lock_guard lock(device_lock());
    if (queues_.empty() || backend_failed_) return;
    if ((ready & EventSources::kError) != 0 && (ready & EventSources::kReadable) == 0) {
        backend_failed("it reported an error or hang-up (interface deleted?)");
        return;
    }
    if (tx_blocked_) transmit();
    receive();
}

// --- Polling ----------------------------------------------------------------------

void VirtioNet::begin_polling() {
    std::lock_guard lock(device_lock());
    polling_ = true;
    if (queues_.empty()) return;
    if (queues_[kTransmitQueue].ready()) queues_[kTransmitQueue].disable_notifications();
    // A dry receive ring asked for a kick; the polls look for buffers instead.
    if (queues_[kReceiveQueue].ready() && !rx_ring_may_have_buffers_) queues_[kReceiveQueue].disable_notifications();
}

bool VirtioNet::poll() {
    std::lock_guard lock(device_lock());
    if (queues_.empty()) return false;
    bool found = false;
    // A chain waiting for the tap is resumed by its writability, not here.
    // (With the tap failed, transmit() still completes chains, dropping.)
    if (!tx_blocked_ && queues_[kTransmitQueue].has_available()) {
        transmit();
        found = true;
    }
    if (!rx_ring_may_have_buffers_ && queues_[kReceiveQueue].has_available()) {
        resume_receive();
        found = true;
    }
    return found;
}

bool VirtioNet::end_polling() {
    std::lock_guard lock(device_lock());
    polling_ = false;
    if (queues_.empty()) return false;
    bool found = false;
    // enable_notifications() re-checks each ring after the switch (false for
    // a queue not ready or broken): what was made available just before it
    // got no kick, so it is taken here.
    VirtQueue& tx = queues_[kTransmitQueue];
    if (!tx_blocked_ && tx.enable_notifications()) {
        transmit();
        found = true;
    }
    VirtQueue& rx = queues_[kReceiveQueue];
    if (!rx_ring_may_have_buffers_ && rx.enable_notifications()) {
        resume_receive();
        found = true;
    }
    return found;
}

// --- Receive ----------------------------------------------------------------------

void VirtioNet::receive() {
    VirtQueue& queue = queues_[kReceiveQueue];
    if (queue.ready() && !backend_failed_) {
        for (unsigned i = 0; i < kReceiveBudget; ++i)
            if ((mergeable_ ? receive_mergeable() : receive_one()) != Step::Progress) break;
        flush(kReceiveQueue, rx_used_);
    }
    update_interest();
}

std::optional<DescriptorChain> VirtioNet::next_receive_chain() {
    VirtQueue& queue = queues_[kReceiveQueue];
    for (;;) {
        if (auto chain = queue.pop()) {
            // Every receive buffer holds at least a header (5.1.6.3.1); one
            // that cannot goes back empty.
            if (chain->writable_length < header_size_) {
                log_rx(fmt::format("receive chain at head {} has {} device-writable bytes, less than the {}-byte "
                                   "header; completed empty",
                                   chain->head, chain->writable_length, header_size_));
                rx_used_.push_back({chain->head, 0});
                continue;
            }
            return chain;
        }
        if (queue.broken()) {
            signals_->signal_device_broken(queue.broken_reason());
            rx_ring_may_have_buffers_ = false;
            return std::nullopt;
        }
        // Dry: stop reading the tap until the driver kicks with new buffers
        // (or, while the loop polls, until a poll finds some: end_polling()
        // asks for the kick). enable_notifications() looks once more, after
        // the driver can see it.
        if (polling_ || !queue.enable_notifications()) {
            rx_ring_may_have_buffers_ = false;
            return std::nullopt;
        }
        queue.disable_notifications();
    }
}

VirtioNet::Step VirtioNet::read_frame(size_t& length) {
    for (;;) {
        const ssize_t n = ::readv(backend_->fd(), iov_.data(), static_cast<int>(iov_.size()));
        if (n > 0) {
            length = static_cast<size_t>(n);
            return Step::Progress;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Step::NoFrame;
        if (n < 0 && errno == EINVAL) return drop_unreadable_frame();
        backend_failed(n == 0 ? std::string("end of file") : fmt::format("read: {}", std::strerror(errno)));
        return Step::Stop;
    }
}

VirtioNet::Step VirtioNet::drop_unreadable_frame() {
    // readv() refused our buffers (too many, a device bug): the tap is fine.
    // The frame is taken alone into the host buffer so the tap moves on.
    const size_t buffers = iov_.size();
    const ssize_t n = ::read(backend_->fd(), rx_buffer_.data(), rx_buffer_.size());
    if (n < 0) {
        // The next wakeup tries again.
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Step::NoFrame;
        backend_failed(fmt::format("read: {}", std::strerror(errno)));
        return Step::Stop;
    }
    ++counters_.rx_dropped;
    log_rx(fmt::format("readv of {} receive buffers refused (EINVAL); frame dropped", buffers));
    return Step::Dropped;
}

bool VirtioNet::receive_frame_acceptable(const DescriptorChain& first, size_t length, size_t capacity) {
    if (length >= capacity + rx_buffer_.size() || length > header_size_ + net::kMaxFrame) {
        ++counters_.rx_dropped;
        log_rx(fmt::format("frame of at least {} bytes from {} is over the {}-byte limit; dropped", length,
                           backend_->label(), net::kMaxFrame));
        return false;
    }
    if (length < header_size_ + net::kEthernetHeader) {
        ++counters_.rx_dropped;
        log_rx(fmt::format("frame of {} bytes from {} is too short; dropped", length, backend_->label()));
        return false;
    }
    // The tap was told what the driver accepts, but frames queued before a
    // reset may still carry offloads the new driver refused.
    std::array<uint8_t, net::kMergeableHeaderSize> raw{};
    read_written(first, std::span(raw.data(), header_size_));
    const net::Header header = net::decode(std::span(raw.data(), header_size_));
    if (const std::string problem = net::check_receive(header, rx_offloads_); !problem.empty()) {
        ++counters_.rx_dropped;
        log_rx(fmt::format("frame from {}: {}; dropped", backend_->label(), problem));
        return false;
    }
    if (const uint8_t flags = net::receive_flags(header, rx_offloads_); flags != header.flags)
        first.write(0, std::span(&flags, 1));
    return true;
}

void VirtioNet::gather(const DescriptorChain& chain) {
    for (const WritableBuffer& buffer : chain.writable) iov_.push_back({buffer.bytes.data(), buffer.bytes.size()});
}

VirtioNet::Step VirtioNet::receive_one() {
    if (rx_chains_.empty()) {
        auto chain = next_receive_chain();
        if (!chain) return Step::NoBuffers;
        rx_chains_.push_back(std::move(*chain));
    }
    const DescriptorChain& chain = rx_chains_.front();
    // Straight into the chain; the host buffer behind it only catches a
    // frame too large for it, so that it is seen whole and dropped.
    iov_.clear();
    gather(chain);
    iov_.push_back({rx_buffer_.data(), rx_buffer_.size()});
    size_t length = 0;
    if (const Step step = read_frame(length); step != Step::Progress)
        return step == Step::Dropped ? Step::Progress : step;
    if (!receive_frame_acceptable(chain, length, chain.writable_length)) return Step::Progress;
    if (length > chain.writable_length) {
        ++counters_.rx_dropped;
        log_rx(fmt::format("frame of {} bytes does not fit the {}-byte receive buffer (no MRG_RXBUF); dropped",
                           length - header_size_, chain.writable_length - header_size_));
        return Step::Progress;  // the chain waits for the next frame
    }
    rx_used_.push_back({chain.head, static_cast<uint32_t>(length)});
    ++counters_.rx_packets;
    counters_.rx_bytes += length - header_size_;
    rx_chains_.clear();
    return Step::Progress;
}

VirtioNet::Step VirtioNet::receive_mergeable() {
    if (rx_pending_) {
        if (const Step step = finish_pending_frame(); step != Step::Progress) return step;
    }
    // Take chains ahead, up to the largest frame expected, so that the
    // frame lands in guest memory directly. One readv() takes at most
    // IOV_MAX buffers, rx_buffer_ being the last: the chains past that
    // (indirect ones hold up to 256 each) wait for the tail or next frame.
    iov_.clear();
    size_t capacity = 0;
    size_t gathered = 0;  // rx_chains_[0, gathered) are in iov_
    const auto take = [&](const DescriptorChain& chain) {
        if (iov_.size() + chain.writable.size() + 1 > IOV_MAX) return false;
        gather(chain);
        capacity += chain.writable_length;
        ++gathered;
        return true;
    };
    while (gathered < rx_chains_.size() && take(rx_chains_[gathered])) {
    }
    while (gathered == rx_chains_.size() && capacity < rx_target_) {
        auto chain = next_receive_chain();
        if (!chain) break;
        rx_chains_.push_back(std::move(*chain));
        if (!take(rx_chains_.back())) break;
    }
    if (gathered == 0) return Step::NoBuffers;

    iov_.push_back({rx_buffer_.data(), rx_buffer_.size()});
    size_t length = 0;
    if (const Step step = read_frame(length); step != Step::Progress)
        return step == Step::Dropped ? Step::Progress : step;
    if (!receive_frame_acceptable(rx_chains_.front(), length, capacity)) return Step::Progress;

    // The frame filled the chains in order, each to the brim but the last;
    // whatever did not fit is at the start of rx_buffer_.
    PendingFrame frame;
    frame.total = length;
    size_t remaining = length;
    size_t used = 0;
    while (remaining > 0 && used < gathered) {
        const size_t take = std::min<size_t>(rx_chains_[used].writable_length, remaining);
        frame.chains.push_back(std::move(rx_chains_[used]));
        frame.lengths.push_back(static_cast<uint32_t>(take));
        remaining -= take;
        ++used;
    }
    rx_chains_.erase(rx_chains_.begin(), rx_chains_.begin() + static_cast<std::ptrdiff_t>(used));
    frame.tail_length = remaining;
    rx_pending_ = std::move(frame);
    return finish_pending_frame();
}

VirtioNet::Step VirtioNet::finish_pending_frame() {
    PendingFrame& frame = *rx_pending_;
    while (frame.tail_length > 0) {
        std::optional<DescriptorChain> chain;
        if (!rx_chains_.empty()) {
            chain = std::move(rx_chains_.front());
            rx_chains_.erase(rx_chains_.begin());
        } else {
            chain = next_receive_chain();
        }
        if (!chain) {
            // The frame holds every slot of the ring and still does not fit:
            // the driver cannot post more, so waiting would hang the queue.
            // (Chains completed in this wakeup are not counted: the flush
            // below returns them and the driver reposts them.)
            if (frame.chains.size() + rx_chains_.size() >= queues_[kReceiveQueue].size()) {
                ++counters_.rx_dropped;
                log_rx(fmt::format("frame of {} bytes is larger than the whole receive ring; dropped",
                                   frame.total - header_size_));
                for (DescriptorChain& held : frame.chains) rx_chains_.push_back(std::move(held));
                rx_pending_.reset();
                return Step::Progress;
            }
            return Step::NoBuffers;  // waits in rx_buffer_ for the driver's kick
        }
        const size_t take = std::min<size_t>(chain->writable_length, frame.tail_length);
        chain->write(0, std::span<const uint8_t>(rx_buffer_).subspan(frame.tail_offset, take));
        frame.chains.push_back(std::move(*chain));
        frame.lengths.push_back(static_cast<uint32_t>(take));
        frame.tail_offset += take;
        frame.tail_length -= take;
    }
    const auto count = static_cast<uint16_t>(frame.chains.size());
    const std::array<uint8_t, 2> num_buffers{static_cast<uint8_t>(count), static_cast<uint8_t>(count >> 8)};
    frame.chains.front().write(net::kNumBuffersOffset, num_buffers);
    for (size_t i = 0; i < frame.chains.size(); ++i) rx_used_.push_back({frame.chains[i].head, frame.lengths[i]});
    ++counters_.rx_packets;
    counters_.rx_bytes += frame.total - header_size_;
    rx_pending_.reset();
    return Step::Progress;
}

// --- Transmit ---------------------------------------------------------------------

void VirtioNet::transmit() {
    VirtQueue& queue = queues_[kTransmitQueue];
    if (!queue.ready()) return;
    const uint64_t sent_before = counters_.tx_packets;
    if (tx_blocked_) {
        // Out of tx_blocked_ while it is tried: a tap failing meanwhile
        // completes whatever waits there.
        DescriptorChain chain = std::move(*tx_blocked_);
        tx_blocked_.reset();
        if (transmit_chain(chain) == Sent::WouldBlock) {
            tx_blocked_ = std::move(chain);
            return;
        }
        tx_used_.push_back({chain.head, 0});
    }
    // Kicks are pointless while we are taking everything there is anyway;
    // while the loop polls they stay off (end_polling() turns them on).
    do {
        queue.disable_notifications();
        while (auto chain = queue.pop()) {
            if (transmit_chain(*chain) == Sent::WouldBlock) {
                // Notifications stay off: the tap being writable resumes us.
                tx_blocked_ = std::move(chain);
                break;
            }
            tx_used_.push_back({chain->head, 0});
            // Large frames go back to the driver as they are sent, not after
            // the whole ring (256 TSO frames take milliseconds): a driver
            // that refills as buffers come back keeps the ring full.
            tx_unpublished_bytes_ += chain->readable_length;
            if (tx_unpublished_bytes_ >= kTransmitPublishBytes) flush(kTransmitQueue, tx_used_);
        }
    } while (!polling_ && !tx_blocked_ && !queue.broken() && queue.enable_notifications());
    if (queue.broken()) signals_->signal_device_broken(queue.broken_reason());
    if (counters_.tx_packets != sent_before) backend_->sent();
    flush(kTransmitQueue, tx_used_);
    update_interest();
}

VirtioNet::Sent VirtioNet::transmit_chain(const DescriptorChain& chain) {
    const auto drop = [&](const std::string& why) {
        ++counters_.tx_dropped;
        log_tx(fmt::format("transmit chain at head {}: {}; dropped", chain.head, why));
        return Sent::Done;
    };
    if (!chain.writable.empty())
        return drop(fmt::format("{} device-writable buffers (transmit buffers are read-only, 5.1.6.2)",
                                chain.writable.size()));
    if (chain.readable_length < header_size_)
        return drop(fmt::format("{} bytes, shorter than the {}-byte header", chain.readable_length, header_size_));
    // One copy of the header, checked and sent: the guest may change its
    // own copy meanwhile.
    std::array<uint8_t, net::kMergeableHeaderSize> raw{};
    chain.read(0, std::span(raw.data(), header_size_));
    const net::Header header = net::decode(std::span<const uint8_t>(raw.data(), header_size_));
    const auto frame_length = static_cast<uint32_t>(chain.readable_length - header_size_);
    if (const std::string problem = net::check_transmit(header, frame_length, tx_offloads_); !problem.empty())
        return drop(problem);
    if (backend_failed_) {
        ++counters_.tx_dropped;
        return Sent::Done;
    }

    // The engine lets no chain hold more descriptors than the queue size.
    static_assert(kQueueSize + 1 <= IOV_MAX, "the header and every buffer of a chain in one writev()");
    net::encode(net::sanitized_for_tap(header), std::span(raw.data(), header_size_));
    iov_.clear();
    iov_.push_back({raw.data(), header_size_});
    size_t skip = header_size_;
    for (const ReadableBuffer& buffer : chain.readable) {
        if (skip >= buffer.bytes.size()) {
            skip -= buffer.bytes.size();
            continue;
        }
        // writev only reads through these pointers.
        iov_.push_back({const_cast<uint8_t*>(buffer.bytes.data()) + skip, buffer.bytes.size() - skip});
        skip = 0;
    }
    for (;;) {
        const ssize_t n = backend_->send(iov_);
        if (n >= 0) {
            ++counters_.tx_packets;
            counters_.tx_bytes += frame_length;
            return Sent::Done;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return Sent::WouldBlock;
        break;
    }
    const int error = errno;
    // A tap whose interface is down (not IFF_UP) says EIO: it may come up.
    if (error == EIO) {
        ++counters_.tx_dropped;
        log_tx(fmt::format("{} is down; {}-byte frame dropped", backend_->label(), frame_length));
        return Sent::Done;
    }
    // Detached or deleted (EBADFD), or the other end gone: for good.
    if (error == EBADFD || error == EPIPE) {
        ++counters_.tx_dropped;
        backend_failed(fmt::format("write: {}", std::strerror(error)));
        return Sent::Done;
    }
    return drop(fmt::format("the tap refused the {}-byte frame: {}", frame_length, std::strerror(error)));
}

// --- Common -----------------------------------------------------------------------

void VirtioNet::flush(unsigned queue_index, std::vector<VirtQueue::UsedElement>& used) {
    if (queue_index == kTransmitQueue) tx_unpublished_bytes_ = 0;
    if (used.empty()) return;
    VirtQueue& queue = queues_[queue_index];
    queue.push_batch(used);
    used.clear();
    if (queue.needs_interrupt()) signals_->signal_used_buffer(queue);
}

void VirtioNet::update_interest() {
    uint32_t want = 0;
    if (!queues_.empty() && !backend_failed_) {
        const VirtQueue& rx = queues_[kReceiveQueue];
        // Read only where a frame can go: posted buffers, and no frame
        // already waiting for more of them.
        if (rx.ready() && !rx.broken() && !rx_pending_ && (rx_ring_may_have_buffers_ || !rx_chains_.empty()))
            want |= EventSources::kReadable;
        if (tx_blocked_) want |= EventSources::kWritable;
    }
    if (want == interest_) return;
    try {
        watcher_.set_interest(backend_->fd(), want);
        interest_ = want;
    } catch (const std::system_error& error) {
        backend_failed(fmt::format("cannot poll it: {}", error.what()));
    }
}

void VirtioNet::backend_failed(const std::string& why) {
    if (backend_failed_) return;
    backend_failed_ = true;
    spdlog::error("{}: {} failed: {}; no more frames in or out", name_, backend_->label(), why);
    try {
        watcher_.set_interest(backend_->fd(), 0);
    } catch (const std::system_error&) {
        // Nothing better to do: the handler ignores it from now on.
    }
    interest_ = 0;
    if (queues_.empty()) return;
    // The link is down now (STATUS).
    signals_->signal_config_change();
    // A chain waiting for the tap would wait for ever, and so would those
    // queued behind it without a kick (notifications are off meanwhile):
    // transmit() drops and completes them all.
    if (tx_blocked_) {
        ++counters_.tx_dropped;
        tx_used_.push_back({tx_blocked_->head, 0});
        tx_blocked_.reset();
        transmit();
    }
}

std::string VirtioNet::state_lines() const {
    const Counters& c = counters_;
    std::string out = fmt::format("net {} mac={} header={} tap_offloads={} polling={}{}{}\n", backend_->label(),
                                  mac_.to_string(), header_size_, offload_names(tap_offloads_),
                                  (interest_ & EventSources::kReadable) != 0 ? "rx" : "",
                                  (interest_ & EventSources::kWritable) != 0 ? "tx" : "",
                                  interest_ == 0 ? "none" : "");
    out += fmt::format("net rx packets={} bytes={} dropped={} chains_held={} frame_waiting={}\n", c.rx_packets,
                       c.rx_bytes, c.rx_dropped, rx_chains_.size(), rx_pending_ ? "yes" : "no");
    out += fmt::format("net tx packets={} bytes={} dropped={} blocked={}{}\n", c.tx_packets, c.tx_bytes, c.tx_dropped,
                       tx_blocked_ ? "yes" : "no", backend_failed_ ? " backend=failed" : "");
    out += backend_->state_report();
    return out;
}

VirtioNet::Counters VirtioNet::counters() const {
    std::lock_guard lock(device_lock());
    return counters_;
}

std::string VirtioNet::counters_text() const {
    const Counters c = counters();
    return fmt::format("rx {} packets {} bytes {} dropped, tx {} packets {} bytes {} dropped", c.rx_packets,
                       c.rx_bytes, c.rx_dropped, c.tx_packets, c.tx_bytes, c.tx_dropped);
}

uint32_t VirtioNet::backend_interest() const {
    std::lock_guard lock(device_lock());
    return interest_;
}

unsigned VirtioNet::tap_offloads() const {
    std::lock_guard lock(device_lock());
    return tap_offloads_;
}

size_t VirtioNet::header_size() const {
    std::lock_guard lock(device_lock());
    return header_size_;
}

MacAddress VirtioNet::mac() const {
    std::lock_guard lock(device_lock());
    return mac_;
}

void VirtioNet::log_rx(const std::string& text) { rx_log_.log(spdlog::level::warn, fmt::format("{}: {}", name_, text)); }

void VirtioNet::log_tx(const std::string& text) { tx_log_.log(spdlog::level::warn, fmt::format("{}: {}", name_, text)); }

std::string VirtioNet::exit_summary() const {
    return fmt::format("({}): {}", backend_->label(), counters_text());
}

}  // namespace minikvm
