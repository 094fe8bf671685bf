#include "vmm/backends/net/user_network.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <slirp/libslirp.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <system_error>

#include "vmm/backends/net/software_offloads.h"
#include "vmm/core/error.h"

namespace minikvm {

struct UserNetwork::Timer {
    int id = 0;
    void* callback_opaque = nullptr;
    int64_t expire_ms = -1;  // -1: not armed
};

namespace {

// The socket buffer towards the device: room for a burst of full-size
// frames before one is dropped and TCP slows down.
constexpr int kSocketBuffer = 1 << 20;
constexpr int kMaxEvents = 64;
constexpr int kMaxPassesPerWake = 32;  // then the event loop's other sources get their turn

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

int64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

uint32_t epoll_events_for(int slirp_events) {
    uint32_t events = 0;
    if ((slirp_events & SLIRP_POLL_IN) != 0) events |= EPOLLIN;
    if ((slirp_events & SLIRP_POLL_OUT) != 0) events |= EPOLLOUT;
    if ((slirp_events & SLIRP_POLL_PRI) != 0) events |= EPOLLPRI;
    return events;
}

int slirp_events_for(uint32_t revents) {
    int events = 0;
    if ((revents & EPOLLIN) != 0) events |= SLIRP_POLL_IN;
    if ((revents & EPOLLOUT) != 0) events |= SLIRP_POLL_OUT;
    if ((revents & EPOLLPRI) != 0) events |= SLIRP_POLL_PRI;
    if ((revents & EPOLLERR) != 0) events |= SLIRP_POLL_ERR;
    if ((revents & EPOLLHUP) != 0) events |= SLIRP_POLL_HUP;
    return events;
}

UserNetwork& self(void* opaque) { return *static_cast<UserNetwork*>(opaque); }

ssize_t on_send_packet(const void* buf, size_t len, void* opaque) {
    self(opaque).send_to_guest(std::span(static_cast<const uint8_t*>(buf), len));
    return static_cast<ssize_t>(len);
}

void on_guest_error(const char* message, void*) { spdlog::warn("user network: guest error: {}", message); }

int64_t on_clock_get_ns(void*) { return now_ns(); }

void* on_timer_new_opaque(SlirpTimerId id, void* callback_opaque, void* opaque) {
    return self(opaque).new_timer(static_cast<int>(id), callback_opaque);
}

void on_timer_free(void* timer, void* opaque) { self(opaque).free_timer(static_cast<UserNetwork::Timer*>(timer)); }

void on_timer_mod(void* timer, int64_t expire_ms, void* opaque) {
    self(opaque).arm_timer(static_cast<UserNetwork::Timer*>(timer), expire_ms);
}

void on_register_poll_fd(int, void*) {}    // slirp_pollfds_fill lists them each round
void on_unregister_poll_fd(int, void*) {}

void on_notify(void* opaque) { self(opaque).wake(); }

const SlirpCb kCallbacks = {
    .send_packet = on_send_packet,
    .guest_error = on_guest_error,
    .clock_get_ns = on_clock_get_ns,
    .timer_new = nullptr,
    .timer_free = on_timer_free,
    .timer_mod = on_timer_mod,
    .register_poll_fd = on_register_poll_fd,
    .unregister_poll_fd = on_unregister_poll_fd,
    .notify = on_notify,
    .init_completed = nullptr,
    .timer_new_opaque = on_timer_new_opaque,
};

in_addr address(const char* text) {
    in_addr out{};
    inet_pton(AF_INET, text, &out);
    return out;
}

std::string address_text(in_addr address) {
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &address, text, sizeof text);
    return text;
}

// Why libslirp could not listen, as far as the host can tell: it says only
// that it failed.
std::string why_no_listen(const HostForward& forward) {
    const UniqueFd probe(::socket(AF_INET, (forward.udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0));
    if (!probe) return std::strerror(errno);
    sockaddr_in where{};
    where.sin_family = AF_INET;
    where.sin_addr = forward.host_address;
    where.sin_port = htons(forward.host_port);
    if (::bind(probe.get(), reinterpret_cast<const sockaddr*>(&where), sizeof where) != 0) {
        if (errno == EADDRINUSE) return "the port is in use";
        if (errno == EADDRNOTAVAIL) return "not an address of this host";
        return std::strerror(errno);
    }
    return "libslirp refused it";
}

}  // namespace

std::unique_ptr<UserNetwork> UserNetwork::open(const std::vector<HostForward>& forwards, EventSources& events) {
    std::unique_ptr<UserNetwork> network(new UserNetwork(events));
    network->start(forwards);
    return network;
}

UserNetwork::UserNetwork(EventSources& events) : events_(events) {}

void UserNetwork::start(const std::vector<HostForward>& forwards) {
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, ends) != 0)
        throw_errno("socketpair for the user network");
    device_end_.reset(ends[0]);
    slirp_end_.reset(ends[1]);
    // Towards the guest only: transmitted frames come through send().
    if (::shutdown(device_end_.get(), SHUT_WR) != 0) throw_errno("shutdown for the user network");
    // Best effort: the kernel caps them at net.core.wmem_max/rmem_max otherwise.
    ::setsockopt(slirp_end_.get(), SOL_SOCKET, SO_SNDBUF, &kSocketBuffer, sizeof kSocketBuffer);
    ::setsockopt(device_end_.get(), SOL_SOCKET, SO_RCVBUF, &kSocketBuffer, sizeof kSocketBuffer);
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) throw_errno("epoll_create1 for the user network");
    timer_fd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    if (!timer_fd_) throw_errno("timerfd_create for the user network");
    wake_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_fd_) throw_errno("eventfd for the user network");
    for (int fd : {timer_fd_.get(), wake_fd_.get()}) {
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.fd = fd;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) throw_errno("epoll_ctl for the user network");
    }
    frame_buffer_.resize(net::kMergeableHeaderSize + net::kMaxFrame);

    SlirpConfig config{};
    config.version = 4;
    config.restricted = 0;
    config.in_enabled = true;
    config.vnetwork = address("10.0.2.0");
    config.vnetmask = address("255.255.255.0");
    config.vhost = address(kHostAddress);
    config.in6_enabled = false;
    config.vhostname = "minikvm";
    config.vdhcp_start = address(kGuestAddress);
    config.vnameserver = address(kNameserverAddress);
    config.disable_host_loopback = false;
    config.enable_emu = false;
    slirp_ = slirp_new(&config, &kCallbacks, this);
    if (slirp_ == nullptr) fail(ExitCode::BadDevice, "--net user: libslirp failed to start");

    for (const HostForward& forward : forwards) {
        if (slirp_add_hostfwd(slirp_, forward.udp ? 1 : 0, forward.host_address, forward.host_port,
                              forward.guest_address, forward.guest_port) < 0)
            fail(ExitCode::BadDevice, "--net user,hostfwd={}: cannot listen on {}:{}: {}", forward.text,
                 address_text(forward.host_address), forward.host_port, why_no_listen(forward));
        spdlog::info("user network: forwarding {} {}:{} to the guest's port {}", forward.udp ? "udp" : "tcp",
                     address_text(forward.host_address), forward.host_port, forward.guest_port);
    }
    {
        std::lock_guard lock(mutex_);
        refill();
    }
    events_.watch(epoll_.get(), EventSources::kReadable, [this](uint32_t) { pump(); });
    watching_ = true;
}

UserNetwork::~UserNetwork() {
    if (watching_) events_.unwatch(epoll_.get());
    if (slirp_ != nullptr) slirp_cleanup(slirp_);
}

void UserNetwork::set_header_size(int bytes) { header_size_ = static_cast<size_t>(bytes); }

UserNetwork::Counters UserNetwork::counters() const {
    return Counters{
        .to_slirp_frames = to_slirp_frames_.load(std::memory_order_relaxed),
        .to_guest_frames = to_guest_frames_.load(std::memory_order_relaxed),
        .to_guest_dropped = to_guest_dropped_.load(std::memory_order_relaxed),
        .unfinished_dropped = unfinished_dropped_.load(std::memory_order_relaxed),
    };
}

std::string UserNetwork::state_report() const {
    const Counters c = counters();
    return fmt::format("user network (libslirp {}): {} frames to libslirp, {} to the guest ({} dropped: socket full), "
                       "{} guest frames dropped (offloads not completable), {} host sockets\n",
                       slirp_version_string(), c.to_slirp_frames, c.to_guest_frames, c.to_guest_dropped,
                       c.unfinished_dropped, host_sockets_.load(std::memory_order_relaxed));
}

ssize_t UserNetwork::send(std::span<const iovec> pieces) {
    std::lock_guard lock(mutex_);
    // One copy out of guest memory, which the guest may change meanwhile:
    // offloads are completed in it, and libslirp reads it more than once.
    size_t length = 0;
    for (const iovec& piece : pieces) {
        if (piece.iov_len > frame_buffer_.size() - length) {
            errno = EMSGSIZE;
            return -1;
        }
        std::memcpy(frame_buffer_.data() + length, piece.iov_base, piece.iov_len);
        length += piece.iov_len;
    }
    take_from_guest(std::span(frame_buffer_.data(), length));
    sockets_may_have_changed_ = true;
    return static_cast<ssize_t>(length);
}

void UserNetwork::sent() {
    std::lock_guard lock(mutex_);
    if (!sockets_may_have_changed_) return;
    refill();
}

void UserNetwork::take_from_guest(std::span<uint8_t> packet) {
    const size_t header_size = header_size_;
    if (packet.size() < header_size) return;  // VirtioNet never sends these
    const net::Header header = net::decode(packet.first(header_size));
    const std::string problem =
        net::complete_offloads(header, packet.subspan(header_size), segment_buffer_, [this](std::span<const uint8_t> out) {
            // Counted first: libslirp may answer (and the guest see the
            // answer) before slirp_input returns.
            to_slirp_frames_.fetch_add(1, std::memory_order_relaxed);
            slirp_input(slirp_, out.data(), static_cast<int>(out.size()));
        });
    if (!problem.empty()) {
        unfinished_dropped_.fetch_add(1, std::memory_order_relaxed);
        drop_log_.log(spdlog::level::warn, fmt::format("user network: guest frame dropped: {}", problem));
    }
}

void UserNetwork::send_to_guest(std::span<const uint8_t> frame) {
    // An empty header: a complete frame, nothing for the driver to do.
    static constexpr uint8_t kEmptyHeader[net::kMergeableHeaderSize] = {};
    iovec pieces[2] = {{const_cast<uint8_t*>(kEmptyHeader), header_size_},
                       {const_cast<uint8_t*>(frame.data()), frame.size()}};  // sendmsg only reads them
    msghdr message{};
    message.msg_iov = pieces;
    message.msg_iovlen = 2;
    // Counted before the send: once sent, the guest may see the frame
    // before this thread runs on.
    to_guest_frames_.fetch_add(1, std::memory_order_relaxed);
    for (;;) {
        if (::sendmsg(slirp_end_.get(), &message, MSG_DONTWAIT) >= 0) return;
        if (errno != EINTR) break;
    }
    // The guest is not taking frames as fast as they come (or is gone):
    // drop, as a full NIC ring would; TCP retransmits at a lower pace.
    to_guest_frames_.fetch_sub(1, std::memory_order_relaxed);
    to_guest_dropped_.fetch_add(1, std::memory_order_relaxed);
}

UserNetwork::Timer* UserNetwork::new_timer(int id, void* callback_opaque) {
    timers_.push_back(std::make_unique<Timer>(Timer{.id = id, .callback_opaque = callback_opaque}));
    return timers_.back().get();
}

void UserNetwork::free_timer(Timer* timer) {
    std::erase_if(timers_, [timer](const std::unique_ptr<Timer>& t) { return t.get() == timer; });
}

void UserNetwork::arm_timer(Timer* timer, int64_t expire_ms) { timer->expire_ms = expire_ms; }

void UserNetwork::wake() {
    const uint64_t one = 1;
    // A full counter already means "wake up".
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_.get(), &one, sizeof one);
}

void UserNetwork::pump() {
    // libslirp takes one datagram per UDP socket per pass: while host
    // sockets had something to read, another pass goes on here rather than
    // through a round of the event loop. The lock is taken per pass, so a
    // vCPU transmitting through send() waits for one pass at most.
    for (int pass = 0; pass < kMaxPassesPerWake; ++pass) {
        std::lock_guard lock(mutex_);
        if (!pump_once()) break;
    }
}

bool UserNetwork::pump_once() {
    epoll_event ready[kMaxEvents];
    const int count = ::epoll_wait(epoll_.get(), ready, kMaxEvents, 0);
    ready_.clear();
    for (int i = 0; i < count; ++i) {
        const int fd = ready[i].data.fd;
        if (fd == timer_fd_.get()) {
            uint64_t expirations = 0;
            [[maybe_unused]] const ssize_t n = ::read(timer_fd_.get(), &expirations, sizeof expirations);
            timer_armed_ms_ = 0;
        } else if (fd == wake_fd_.get()) {
            uint64_t value = 0;
            [[maybe_unused]] const ssize_t n = ::read(wake_fd_.get(), &value, sizeof value);
        } else {
            ready_.emplace_back(fd, uint32_t{ready[i].events});
        }
    }
    std::sort(ready_.begin(), ready_.end());
    for (Polled& p : polled_) {
        const auto it = std::lower_bound(ready_.begin(), ready_.end(), std::pair<int, uint32_t>(p.fd, 0));
        p.revents = it != ready_.end() && it->first == p.fd ? it->second : 0;
    }
    // libslirp's sockets, and its own fast/slow timeouts, which it checks
    // against the clock in here.
    slirp_pollfds_poll(
        slirp_, 0,
        [](int index, void* opaque) -> int {
            const auto& polled = static_cast<UserNetwork*>(opaque)->polled_;
            if (index < 0 || static_cast<size_t>(index) >= polled.size()) return 0;
            return slirp_events_for(polled[static_cast<size_t>(index)].revents);
        },
        this);
    run_expired_timers();
    refill();
    return std::any_of(ready_.begin(), ready_.end(), [](const auto& fd) { return (fd.second & EPOLLIN) != 0; });
}

void UserNetwork::run_expired_timers() {
    const int64_t now_ms = now_ns() / 1'000'000;
    // A timer callback may free or re-arm timers: collect first.
    due_timers_.clear();
    for (const auto& timer : timers_)
        if (timer->expire_ms >= 0 && timer->expire_ms <= now_ms) {
            timer->expire_ms = -1;
            due_timers_.emplace_back(timer->id, timer->callback_opaque);
        }
    for (const auto& [id, opaque] : due_timers_) slirp_handle_timer(slirp_, static_cast<SlirpTimerId>(id), opaque);
}

void UserNetwork::refill() {
    sockets_may_have_changed_ = false;
    next_polled_.clear();
    uint32_t timeout_ms = std::numeric_limits<uint32_t>::max();
    slirp_pollfds_fill(
        slirp_, &timeout_ms,
        [](int fd, int events, void* opaque) -> int {
            auto& list = static_cast<UserNetwork*>(opaque)->next_polled_;
            list.push_back(Polled{.fd = fd, .events = epoll_events_for(events), .revents = 0});
            return static_cast<int>(list.size() - 1);
        },
        this);
    std::swap(polled_, next_polled_);

    // What each socket is wanted for (a socket may be listed twice).
    wanted_.clear();
    for (const Polled& p : polled_) wanted_.emplace_back(p.fd, p.events);
    std::sort(wanted_.begin(), wanted_.end());
    size_t merged = 0;
    for (const auto& [fd, events] : wanted_) {
        if (merged > 0 && wanted_[merged - 1].first == fd)
            wanted_[merged - 1].second |= events;
        else
            wanted_[merged++] = {fd, events};
    }
    wanted_.resize(merged);

    // Sync our epoll set, walking both sorted lists: a socket libslirp
    // closed left it already (its last reference is gone), and a new socket
    // may reuse its number, so ADD and MOD fall back to each other.
    const auto add_or_modify = [this](int fd, uint32_t events, bool known) {
        epoll_event event{};
        event.events = events;
        event.data.fd = fd;
        const int first = known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (::epoll_ctl(epoll_.get(), first, fd, &event) == 0) return;
        const int second = known ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
        if (::epoll_ctl(epoll_.get(), second, fd, &event) != 0)
            spdlog::warn("user network: cannot poll socket {}: {}", fd, std::strerror(errno));
    };
    auto before = registered_.begin();
    for (const auto& [fd, events] : wanted_) {
        for (; before != registered_.end() && before->first < fd; ++before)
            ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, before->first, nullptr);
        if (before != registered_.end() && before->first == fd) {
            if (before->second != events) add_or_modify(fd, events, true);
            ++before;
        } else {
            add_or_modify(fd, events, false);
        }
    }
    for (; before != registered_.end(); ++before) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, before->first, nullptr);
    std::swap(registered_, wanted_);
    host_sockets_.store(registered_.size(), std::memory_order_relaxed);

    // The next deadline: libslirp's own timeout or its earliest timer.
    const int64_t now_ms = now_ns() / 1'000'000;
    int64_t deadline_ms = now_ms + std::min<uint32_t>(timeout_ms, 1000);
    for (const auto& timer : timers_)
        if (timer->expire_ms >= 0) deadline_ms = std::min(deadline_ms, timer->expire_ms);
    // An absolute time in the past fires at once; 0 would disarm it.
    deadline_ms = std::max<int64_t>(deadline_ms, 1);
    // Armed to fire no later than that already: firing early only means
    // one more round (which arms it again), and this spares a system call
    // after every transmitted batch.
    if (timer_armed_ms_ != 0 && timer_armed_ms_ > now_ms && timer_armed_ms_ <= deadline_ms) return;
    itimerspec spec{};
    spec.it_value.tv_sec = deadline_ms / 1000;
    spec.it_value.tv_nsec = (deadline_ms % 1000) * 1'000'000;
    ::timerfd_settime(timer_fd_.get(), TFD_TIMER_ABSTIME, &spec, nullptr);
    timer_armed_ms_ = deadline_ms;
}

}  // namespace minikvm
