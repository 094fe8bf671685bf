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
#include <unordered_map>

#include "vmm/backends/net/software_offloads.h"
#include "vmm/core/error.h"

namespace minikvm {

struct UserNetwork::Timer {
    int id = 0;
    void* callback_opaque = nullptr;
    int64_t expire_ms = -1;  // -1: not armed
};

namespace {

// Socket buffers between the device and us: room for a burst of full-size
// frames each way before the device sees backpressure (or, towards the
// guest, before a frame is dropped and TCP slows down).
constexpr int kSocketBuffer = 1 << 20;
// Frames read from the guest per round, so libslirp's sockets get a turn.
constexpr int kGuestFramesPerRound = 64;
constexpr int kMaxEvents = 64;

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
    for (int end : ends) {
        // Best effort: the kernel caps it at net.core.wmem_max otherwise.
        ::setsockopt(end, SOL_SOCKET, SO_SNDBUF, &kSocketBuffer, sizeof kSocketBuffer);
        ::setsockopt(end, SOL_SOCKET, SO_RCVBUF, &kSocketBuffer, sizeof kSocketBuffer);
    }
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) throw_errno("epoll_create1 for the user network");
    timer_fd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    if (!timer_fd_) throw_errno("timerfd_create for the user network");
    wake_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_fd_) throw_errno("eventfd for the user network");
    for (int fd : {slirp_end_.get(), timer_fd_.get(), wake_fd_.get()}) {
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
    refill();
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

void UserNetwork::send_to_guest(std::span<const uint8_t> frame) {
    // An empty header: a complete frame, nothing for the driver to do.
    out_buffer_.assign(header_size_, 0);
    out_buffer_.insert(out_buffer_.end(), frame.begin(), frame.end());
    // Counted before the send: once sent, the guest may see the frame
    // before this thread runs on.
    to_guest_frames_.fetch_add(1, std::memory_order_relaxed);
    for (;;) {
        if (::send(slirp_end_.get(), out_buffer_.data(), out_buffer_.size(), MSG_DONTWAIT) >= 0) return;
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
    epoll_event ready[kMaxEvents];
    const int count = ::epoll_wait(epoll_.get(), ready, kMaxEvents, 0);
    for (Polled& p : polled_) p.revents = 0;
    std::unordered_map<int, uint32_t> revents;
    for (int i = 0; i < count; ++i) {
        const int fd = ready[i].data.fd;
        if (fd == slirp_end_.get()) {
            read_from_guest();
        } else if (fd == timer_fd_.get()) {
            uint64_t expirations = 0;
            [[maybe_unused]] const ssize_t n = ::read(timer_fd_.get(), &expirations, sizeof expirations);
        } else if (fd == wake_fd_.get()) {
            uint64_t value = 0;
            [[maybe_unused]] const ssize_t n = ::read(wake_fd_.get(), &value, sizeof value);
        } else {
            revents[fd] = ready[i].events;
        }
    }
    for (Polled& p : polled_)
        if (auto it = revents.find(p.fd); it != revents.end()) p.revents = it->second;
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
}

void UserNetwork::read_from_guest() {
    for (int i = 0; i < kGuestFramesPerRound; ++i) {
        const ssize_t n = ::recv(slirp_end_.get(), frame_buffer_.data(), frame_buffer_.size(), MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;  // EAGAIN: drained; anything else: the device end is gone
        }
        const auto length = static_cast<size_t>(n);
        if (length < header_size_) continue;  // VirtioNet never sends these
        const net::Header header = net::decode(std::span<const uint8_t>(frame_buffer_.data(), header_size_));
        const std::span<uint8_t> frame(frame_buffer_.data() + header_size_, length - header_size_);
        const std::string problem = net::complete_offloads(header, frame, segment_buffer_, [this](std::span<const uint8_t> out) {
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
    // More may be waiting: the level-triggered epoll set says so next round.
}

void UserNetwork::run_expired_timers() {
    const int64_t now_ms = now_ns() / 1'000'000;
    // A timer callback may free or re-arm timers: collect first.
    std::vector<std::pair<int, void*>> due;
    for (const auto& timer : timers_)
        if (timer->expire_ms >= 0 && timer->expire_ms <= now_ms) {
            timer->expire_ms = -1;
            due.emplace_back(timer->id, timer->callback_opaque);
        }
    for (const auto& [id, opaque] : due) slirp_handle_timer(slirp_, static_cast<SlirpTimerId>(id), opaque);
}

void UserNetwork::refill() {
    std::vector<Polled> next;
    uint32_t timeout_ms = std::numeric_limits<uint32_t>::max();
    struct Fill {
        std::vector<Polled>* list;
    } fill{&next};
    slirp_pollfds_fill(
        slirp_, &timeout_ms,
        [](int fd, int events, void* opaque) -> int {
            auto* list = static_cast<Fill*>(opaque)->list;
            list->push_back(Polled{.fd = fd, .events = epoll_events_for(events), .revents = 0});
            return static_cast<int>(list->size() - 1);
        },
        &fill);

    // Sync our epoll set: a socket libslirp closed left it already (its
    // last reference is gone), and a new socket may reuse its number, so
    // ADD and MOD fall back to each other.
    std::unordered_map<int, uint32_t> wanted;
    for (const Polled& p : next) wanted[p.fd] |= p.events;
    std::unordered_map<int, uint32_t> before;
    for (const Polled& p : polled_) before[p.fd] |= p.events;
    for (const auto& [fd, events] : before)
        if (!wanted.contains(fd)) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    for (const auto& [fd, events] : wanted) {
        epoll_event event{};
        event.events = events;
        event.data.fd = fd;
        const auto it = before.find(fd);
        if (it != before.end() && it->second == events) continue;
        const int first = it == before.end() ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
        if (::epoll_ctl(epoll_.get(), first, fd, &event) != 0) {
            const int second = first == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
            if (::epoll_ctl(epoll_.get(), second, fd, &event) != 0)
                spdlog::warn("user network: cannot poll socket {}: {}", fd, std::strerror(errno));
        }
    }
    polled_ = std::move(next);
    host_sockets_.store(wanted.size(), std::memory_order_relaxed);

    // The next deadline: libslirp's own timeout or its earliest timer.
    int64_t deadline_ms = now_ns() / 1'000'000 + std::min<uint32_t>(timeout_ms, 1000);
    for (const auto& timer : timers_)
        if (timer->expire_ms >= 0) deadline_ms = std::min(deadline_ms, timer->expire_ms);
    itimerspec spec{};
    // An absolute time in the past fires at once; 0 would disarm it.
    const int64_t at_ms = std::max<int64_t>(deadline_ms, 1);
    spec.it_value.tv_sec = at_ms / 1000;
    spec.it_value.tv_nsec = (at_ms % 1000) * 1'000'000;
    ::timerfd_settime(timer_fd_.get(), TFD_TIMER_ABSTIME, &spec, nullptr);
}

}  // namespace minikvm
