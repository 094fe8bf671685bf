#pragma once
// --net user: the guest's network is libslirp, a user-mode TCP/IP stack in
// this process, so no tap and no privilege is needed. The guest is
// 10.0.2.15 (by DHCP), the host's loopback is 10.0.2.2, DNS to 10.0.2.3 is
// forwarded to the host's resolver, and each hostfwd listens on the host
// and forwards its connections into the guest.
//
// To VirtioNet this is a NetBackend like a tap, in two halves. Transmit is
// a call: send() completes the frame's offloads in software (libslirp takes
// only complete frames) and hands it to slirp_input() on the transmitting
// thread, and sent(), at the end of the round, brings the polled sockets
// and the timer up to date. Receive is one end of a socketpair that
// carries one virtio-net header plus frame per datagram: frames libslirp
// sends go out there with an empty header, so the device reads them as it
// reads a tap, straight into the guest's buffers (a full socket drops the
// frame, as a full NIC ring would). libslirp's own sockets and a timerfd for its timers sit in
// an epoll set of our own, which the event loop watches as one fd:
// libslirp opens and closes sockets at will, and this keeps that churn out
// of the loop's registrations.
//
// Threads. libslirp is not thread-safe: every call into it, and all state
// here, is under one mutex. The event loop's handler takes it, and so do
// send() and sent(), which VirtioNet calls holding its device lock on a
// vCPU or the event loop thread: the order is always device lock, then this
// one; nothing here takes the device lock (frames to the guest go through
// the socket), so the two cannot deadlock.

#include <netinet/in.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "vmm/backends/net/net_backend.h"
#include "vmm/backends/net/net_config.h"
#include "vmm/backends/net/net_header.h"
#include "vmm/core/event_sources.h"
#include "vmm/core/rate_limited_log.h"
#include "vmm/core/unique_fd.h"

struct Slirp;

namespace minikvm {

class UserNetwork : public NetBackend {
public:
    // The addresses libslirp's network uses (QEMU's defaults, which guides
    // and scripts assume).
    static constexpr const char* kGuestAddress = "10.0.2.15";
    static constexpr const char* kHostAddress = "10.0.2.2";
    static constexpr const char* kNameserverAddress = "10.0.2.3";

    // What it has done, for the SIGUSR1 report and tests.
    struct Counters {
        uint64_t to_slirp_frames = 0;    // complete frames handed to libslirp
        uint64_t to_guest_frames = 0;    // frames libslirp sent to the guest
        uint64_t to_guest_dropped = 0;   // ... that found the socket full
        uint64_t unfinished_dropped = 0;  // guest frames whose offloads could not be completed
    };

    // Starts libslirp and every hostfwd; `events` runs it from then on.
    // A hostfwd that cannot listen, or libslirp failing, throws VmmError
    // (ExitCode::BadDevice) with one line naming the rule.
    static std::unique_ptr<UserNetwork> open(const std::vector<HostForward>& forwards, EventSources& events);
    ~UserNetwork() override;
    UserNetwork(const UserNetwork&) = delete;
    UserNetwork& operator=(const UserNetwork&) = delete;

    // VirtioNet's end of the socketpair: frames to the guest only (writes
    // to it fail with EPIPE: transmit through send()).
    int fd() const override { return device_end_.get(); }
    const std::string& name() const override { return name_; }
    std::string label() const override { return name_; }
    // libslirp only ever sends complete frames, so there is nothing to allow.
    void set_offloads(unsigned) override {}
    void set_header_size(int bytes) override;
    // Into libslirp, on the calling thread; never EAGAIN (libslirp drops
    // what its host sockets cannot take, as QEMU's does). -1 with EMSGSIZE
    // for more than a header and the largest frame.
    ssize_t send(std::span<const iovec> pieces) override;
    // Polls the sockets, and arms the timer for the timeouts, that the
    // frames just sent made libslirp want.
    void sent() override;

    Counters counters() const;
    // libslirp's connection table and counters, for the SIGUSR1 report.
    std::string state_report() const override;

    // libslirp's callbacks (C functions in the .cpp) land here.
    struct Timer;
    void send_to_guest(std::span<const uint8_t> frame);
    Timer* new_timer(int id, void* callback_opaque);
    void free_timer(Timer* timer);
    void arm_timer(Timer* timer, int64_t expire_ms);
    void wake();

private:
    explicit UserNetwork(EventSources& events);
    void start(const std::vector<HostForward>& forwards);
    // The event loop's handler for our epoll set.
    void pump();
    // One pass over what is ready (mutex_ held): whether a host socket was
    // readable.
    bool pump_once();
    // The rest with mutex_ held.
    void take_from_guest(std::span<uint8_t> packet);
    void run_expired_timers();
    // Brings our epoll set in line with the sockets libslirp wants polled
    // now and arms the timerfd for the next deadline.
    void refill();

    EventSources& events_;
    std::string name_ = "user network";
    UniqueFd device_end_;  // VirtioNet's
    UniqueFd slirp_end_;   // ours
    UniqueFd epoll_;
    UniqueFd timer_fd_;
    UniqueFd wake_fd_;
    bool watching_ = false;
    std::atomic<size_t> header_size_{net::kHeaderSize};  // set by a vCPU thread

    // libslirp and everything below it.
    std::mutex mutex_;
    Slirp* slirp_ = nullptr;
    bool sockets_may_have_changed_ = false;  // by a send() since the last refill()
    std::vector<std::unique_ptr<Timer>> timers_;
    int64_t timer_armed_ms_ = 0;  // when timer_fd_ fires (absolute ms; 0: not armed)
    // Storage reused from round to round, so that nothing is allocated per
    // frame or per wakeup once it has grown.
    std::vector<uint8_t> frame_buffer_;    // a transmitted frame, gathered
    std::vector<uint8_t> segment_buffer_;  // a TSO segment being built
    std::vector<std::pair<int, void*>> due_timers_;
    // The sockets as libslirp last listed them (index = its poll index),
    // and what each reported in this round.
    struct Polled {
        int fd;
        uint32_t events;   // epoll bits
        uint32_t revents;  // epoll bits
    };
    std::vector<Polled> polled_;
    std::vector<Polled> next_polled_;
    // (fd, epoll bits), sorted by fd: what our epoll set holds now, what
    // libslirp wants next, and what epoll reported in this round.
    using FdEvents = std::vector<std::pair<int, uint32_t>>;
    FdEvents registered_;
    FdEvents wanted_;
    FdEvents ready_;
    // Written under mutex_, read by the SIGUSR1 report.
    std::atomic<uint64_t> to_slirp_frames_{0};
    std::atomic<uint64_t> to_guest_frames_{0};
    std::atomic<uint64_t> to_guest_dropped_{0};
    std::atomic<uint64_t> unfinished_dropped_{0};
    std::atomic<size_t> host_sockets_{0};
    RateLimitedLog drop_log_;
};

}  // namespace minikvm
