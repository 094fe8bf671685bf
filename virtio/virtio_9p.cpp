#include "virtio/virtio_9p.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "virtio/split_ring.h"
#include "vmm/backends/p9/p9_messages.h"

namespace minikvm {

namespace {

constexpr uint64_t bit(unsigned n) { return uint64_t{1} << n; }

// One per worker thread, kept between requests so a request allocates
// nothing: the message copied out of the chain (grown, never shrunk:
// resizing down and up again would zero-fill it each time), the reply head,
// and the iovecs over the chain's data buffers.
struct WorkerBuffers {
    std::vector<uint8_t> message;
    std::vector<uint8_t> reply;
    std::vector<iovec> read_into, write_from;
};
thread_local WorkerBuffers worker_buffers;

UniqueFd make_eventfd() {
    const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
    return UniqueFd(fd);
}

}  // namespace

Virtio9p::Virtio9p(std::string name, std::string tag, std::unique_ptr<p9::Server> server, EventSources& events,
                   unsigned threads)
    : name_(std::move(name)),
      tag_(std::move(tag)),
      server_(std::move(server)),
      events_(events),
      finished_fd_(make_eventfd()),
      workers_(threads) {
    spdlog::info("{}: '{}' as tag '{}', {}{}", name_, server_->tree().root_path(), tag_,
                 server_->options().read_only ? "read-only" : "read-write",
                 server_->options().allow_devices ? ", device nodes allowed" : "");
    events_.watch(finished_fd_.get(), EventSources::kReadable, [this](uint32_t) {
        uint64_t count;
        while (::read(finished_fd_.get(), &count, sizeof count) > 0) {
        }
        std::lock_guard lock(device_lock());
        publish_finished();
    });
    events_.add_poller(*this);
}

Virtio9p::~Virtio9p() {
    // No poll or completion handler may run past this point.
    events_.remove_poller(*this);
    events_.unwatch(finished_fd_.get());
    std::lock_guard lock(device_lock());
    drain();
    queues_ = {};
    signals_ = nullptr;
}

uint64_t Virtio9p::device_features() const {
    return bit(kFeatureMountTag) | bit(split_ring::kFeatureIndirectDesc) | bit(split_ring::kFeatureEventIdx);
}

void Virtio9p::read_config(uint32_t offset, std::span<uint8_t> data) {
    std::vector<uint8_t> bytes(config_size());
    bytes[0] = static_cast<uint8_t>(tag_.size());
    bytes[1] = static_cast<uint8_t>(tag_.size() >> 8);
    std::copy(tag_.begin(), tag_.end(), bytes.begin() + 2);
    std::copy_n(bytes.begin() + offset, data.size(), data.begin());
}

void Virtio9p::write_config(uint32_t offset, std::span<const uint8_t> data) {
    log_.log(spdlog::level::warn, fmt::format("{}: {}-byte write to the read-only mount tag at offset {}; ignored",
                                              name_, data.size(), offset));
}

void Virtio9p::activate(uint64_t, std::span<VirtQueue> queues, VirtioTransportSignals& signals) {
    queues_ = queues;
    signals_ = &signals;
    process_queue();  // a legacy driver may have kicked before DRIVER_OK
}

void Virtio9p::reset() {
    drain();
    queues_ = {};
    signals_ = nullptr;
    used_.clear();
    // A new driver starts a new session with Tversion; no fid survives.
    server_->reset();
}

void Virtio9p::queue_notified(unsigned index) {
    if (queues_.empty() || index != kRequestQueue) return;
    process_queue();
}

// --- Polling ------------------------------------------------------------------

void Virtio9p::begin_polling() {
    std::lock_guard lock(device_lock());
    polling_ = true;
    signal_replies(false);  // poll() looks at has_finished_ itself
    if (!queues_.empty() && queues_[kRequestQueue].ready()) queues_[kRequestQueue].disable_notifications();
}

bool Virtio9p::poll() {
    std::lock_guard lock(device_lock());
    const bool finished = publish_if_finished();
    if (queues_.empty() || !queues_[kRequestQueue].has_available()) return finished;
    process_queue();
    return true;
}

bool Virtio9p::end_polling() {
    std::lock_guard lock(device_lock());
    polling_ = false;
    // A reply added before this is in finished_ for the look below; one
    // added after writes the eventfd.
    signal_replies(true);
    const bool finished = publish_if_finished();
    if (queues_.empty()) return finished;
    // enable_notifications() re-checks the ring after the switch (false for
    // a queue not ready or broken): a request made available just before it
    // gets no kick, so it is taken here.
    if (!queues_[kRequestQueue].enable_notifications()) return finished;
    process_queue();
    return true;
}

// --- Requests -------------------------------------------------------------------

void Virtio9p::process_queue() {
    VirtQueue& queue = queues_[kRequestQueue];
    if (!queue.ready()) return;
    // Kicks are pointless while everything there is gets taken anyway, and
    // while polling.
    do {
        queue.disable_notifications();
        while (auto chain = queue.pop()) start(std::move(*chain));
    } while (!polling_ && !queue.broken() && queue.enable_notifications());
    if (queue.broken()) signals_->signal_device_broken(queue.broken_reason());
    publish_finished();  // chains rejected outright
}

void Virtio9p::start(DescriptorChain chain) {
    const uint32_t length = chain.readable_length;
    if (length < p9::kHeaderSize || length > p9::Server::kMaxMsize) {
        ++rejected_;
        log_.log(spdlog::level::warn,
                 fmt::format("{}: chain at head {} carries {} request bytes, not one 9P message ({} to {}); "
                             "completed with nothing written",
                             name_, chain.head, length, p9::kHeaderSize, p9::Server::kMaxMsize));
        used_.add(chain.head, 0);
        return;
    }
    uint8_t header[p9::kHeaderSize];
    chain.read(0, header);
    const uint64_t sequence = next_sequence_++;
    {
        std::lock_guard lock(jobs_mutex_);
        in_flight_.emplace(sequence, static_cast<uint16_t>(header[5] | (header[6] << 8)));
    }
    workers_.post([this, chain = std::move(chain), sequence] { serve(chain, sequence); });
}

void Virtio9p::serve(const DescriptorChain& chain, uint64_t sequence) {
    WorkerBuffers& buffers = worker_buffers;
    // The message out of the guest's buffers, but a Twrite's data: that the
    // server writes to the file from where it is. (The type is read from
    // this copy only: the guest may change its buffers meanwhile.)
    const uint32_t length = chain.readable_length;
    if (buffers.message.size() < length) buffers.message.resize(length);
    const size_t head = chain.read(0, std::span(buffers.message).first(std::min<size_t>(length, p9::kWriteFields)));
    const auto type = static_cast<p9::Type>(buffers.message[4]);
    size_t copied = head;
    if (type == p9::Type::Twrite && length > p9::kWriteFields) {
        chain.readable_iovecs(p9::kWriteFields, buffers.write_from);
    } else {
        buffers.write_from.clear();
        copied += chain.read(head, std::span(buffers.message).subspan(head, length - head));
    }
    const std::span<const uint8_t> message = std::span(buffers.message).first(copied);
    // Rread's data goes straight into the guest's buffers after its head.
    if (type == p9::Type::Tread) chain.writable_iovecs(p9::kReadHeader, buffers.read_into);
    else buffers.read_into.clear();

    // Tflush: its reply must follow the flushed request's (9P's flush(5));
    // earlier requests only, so this never waits for itself or later work.
    if (message.size() == p9::kHeaderSize + 2 && type == p9::Type::Tflush) {
        const uint16_t old_tag = static_cast<uint16_t>(message[7] | (message[8] << 8));
        std::unique_lock lock(jobs_mutex_);
        job_done_.wait(lock, [&] {
            for (const auto& [earlier, tag] : in_flight_) {
                if (earlier >= sequence) break;
                if (tag == old_tag) return false;
            }
            return true;
        });
    }
    const size_t direct = server_->handle(message, chain.writable_length,
                                          p9::DataBuffers{buffers.read_into, buffers.write_from}, buffers.reply);
    // With data read straight into the chain the reply is its 11-byte head,
    // which fits before that data.
    const size_t written = chain.write(0, buffers.reply) + direct;
    bool signal = false;
    {
        std::lock_guard lock(jobs_mutex_);
        finished_.push_back({chain.head, static_cast<uint32_t>(written)});
        has_finished_.store(true, std::memory_order_release);
        in_flight_.erase(sequence);
        signal = signal_finished_;
    }
    job_done_.notify_all();
    if (!signal) return;  // the event loop polls: it finds the reply itself
    const uint64_t one = 1;
    // The eventfd cannot overflow here (one per request); a failure would
    // only delay publication until the next.
    [[maybe_unused]] const ssize_t n = ::write(finished_fd_.get(), &one, sizeof one);
}

void Virtio9p::signal_replies(bool on) {
    // Under the mutex a worker holds while it adds its reply and reads this.
    std::lock_guard jobs(jobs_mutex_);
    signal_finished_ = on;
}

bool Virtio9p::publish_if_finished() {
    // Looked for without a system call or the workers' mutex.
    if (!has_finished_.load(std::memory_order_acquire)) return false;
    publish_finished();
    return true;
}

void Virtio9p::publish_finished() {
    {
        std::lock_guard lock(jobs_mutex_);
        publishing_.swap(finished_);  // both keep their capacity
        has_finished_.store(false, std::memory_order_relaxed);
    }
    if (!queues_.empty()) {  // else reset meanwhile: the driver expects nothing
        for (const Finished& done : publishing_) used_.add(done.head, done.written);
        used_.publish(queues_[kRequestQueue], *signals_);
    }
    publishing_.clear();
}

void Virtio9p::drain() {
    workers_.wait_idle();
    std::lock_guard lock(jobs_mutex_);
    finished_.clear();
    has_finished_.store(false, std::memory_order_relaxed);
    in_flight_.clear();
}

void Virtio9p::wait_idle() {
    workers_.wait_idle();
    std::lock_guard lock(device_lock());
    publish_finished();
}

std::string Virtio9p::state_lines() const {
    const p9::Server::Stats s = server_->stats();
    size_t in_flight;
    {
        std::lock_guard lock(jobs_mutex_);
        in_flight = in_flight_.size();
    }
    return fmt::format("tag={} root={} {} msize={} requests={} errors={} malformed={} rejected_chains={} "
                       "read_bytes={} written_bytes={} fids={} in_flight={}\n",
                       tag_, server_->tree().root_path(), server_->options().read_only ? "ro" : "rw",
                       server_->msize(), s.requests, s.errors, s.malformed, rejected_, s.bytes_read,
                       s.bytes_written, s.fids, in_flight);
}

std::string Virtio9p::exit_summary() const {
    const p9::Server::Stats s = server_->stats();
    if (s.requests == 0) return {};
    return fmt::format("{} 9P requests ({} errors, {} malformed), {} bytes read, {} written", s.requests, s.errors,
                       s.malformed, s.bytes_read, s.bytes_written);
}

}  // namespace minikvm
