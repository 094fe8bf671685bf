#pragma once
// --net user: the guest's network is libslirp, a user-mode TCP/IP stack in
// this process, so no tap and no privilege is needed. The guest is
// 10.0.2.15 (by DHCP), the host's loopback is 10.0.2.2, DNS to 10.0.2.3 is
// forwarded to the host's resolver, and each hostfwd listens on the host
// and forwards its connections into the guest.
//
// To VirtioNet this is a NetBackend like a tap: one end of a socketpair
// that carries one virtio-net header plus frame per datagram. The other end
// belongs to this class, which runs on the event loop: frames from the
// guest get their offloads completed in software (libslirp takes only
// complete frames) and go to slirp_input(); frames libslirp sends go out
// with an empty header. libslirp's own sockets and a timerfd for its timers
// sit in an epoll set of our own, which the event loop watches as one fd:
// libslirp opens and closes sockets at will, and this keeps that churn out
// of the loop's registrations. libslirp is not thread-safe: after open()
// it is only called on the loop thread (and by the destructor, once the
// loop no longer runs our handler).

#include <netinet/in.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
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

    int fd() const override { return device_end_.get(); }
    const std::string& name() const override { return name_; }
    std::string label() const override { return name_; }
    // libslirp only ever sends complete frames, so there is nothing to allow.
    void set_offloads(unsigned) override {}
    void set_header_size(int bytes) override;

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
    // The event loop's handler for our epoll set: everything happens here.
    void pump();
    void read_from_guest();
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
    Slirp* slirp_ = nullptr;
    bool watching_ = false;
    std::atomic<size_t> header_size_{net::kHeaderSize};  // set by a vCPU thread
    std::vector<uint8_t> frame_buffer_;
    std::vector<uint8_t> segment_buffer_;  // a TSO segment being built, reused
    std::vector<uint8_t> out_buffer_;
    std::vector<std::unique_ptr<Timer>> timers_;
    // The sockets as libslirp last listed them (index = its poll index),
    // and what each reported in this round.
    struct Polled {
        int fd;
        uint32_t events;   // epoll bits
        uint32_t revents;  // epoll bits
    };
    std::vector<Polled> polled_;
    // Written on the loop thread, read by the SIGUSR1 report.
    std::atomic<uint64_t> to_slirp_frames_{0};
    std::atomic<uint64_t> to_guest_frames_{0};
    std::atomic<uint64_t> to_guest_dropped_{0};
    std::atomic<uint64_t> unfinished_dropped_{0};
    std::atomic<size_t> host_sockets_{0};
    RateLimitedLog drop_log_;
};

}  // namespace minikvm
