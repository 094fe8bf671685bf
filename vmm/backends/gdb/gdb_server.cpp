#include "vmm/backends/gdb/gdb_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

namespace minikvm::gdb {

namespace {

UniqueFd listen_tcp(GdbAddress& address) {
    const bool v6 = address.host.find(':') != std::string::npos;
    UniqueFd fd(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) throw GdbServerError(fmt::format("socket: {}", std::strerror(errno)));
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_storage storage{};
    socklen_t length = 0;
    if (v6) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(address.port);
        ::inet_pton(AF_INET6, address.host.c_str(), &in6->sin6_addr);
        length = sizeof(sockaddr_in6);
    } else {
        auto* in4 = reinterpret_cast<sockaddr_in*>(&storage);
        in4->sin_family = AF_INET;
        in4->sin_port = htons(address.port);
        ::inet_pton(AF_INET, address.host.c_str(), &in4->sin_addr);
        length = sizeof(sockaddr_in);
    }
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&storage), length) < 0) {
        const int error = errno;
        if (error == EADDRINUSE)
            throw GdbServerError(fmt::format("{} is in use (another minikvm or gdb server?)", address.text()));
        if (error == EADDRNOTAVAIL)
            throw GdbServerError(fmt::format("{}: not an address of this host", address.text()));
        throw GdbServerError(fmt::format("{}: {}", address.text(), std::strerror(error)));
    }
    if (::listen(fd.get(), 1) < 0) throw GdbServerError(fmt::format("listen: {}", std::strerror(errno)));
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&storage), &length) == 0)
        address.port = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port
                                : reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
    return fd;
}

UniqueFd listen_unix(const GdbAddress& address) {
    sockaddr_un name{};
    name.sun_family = AF_UNIX;
    std::memcpy(name.sun_path, address.path.c_str(), address.path.size() + 1);
    struct stat info {};
    if (::lstat(address.path.c_str(), &info) == 0) {
        if (!S_ISSOCK(info.st_mode))
            throw GdbServerError(fmt::format("{}: exists and is not a socket", address.path));
        // A socket someone still listens on is in use; a dead one is stale.
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (probe && ::connect(probe.get(), reinterpret_cast<sockaddr*>(&name), sizeof(name)) == 0)
            throw GdbServerError(fmt::format("{} is in use (another minikvm or gdb server?)", address.text()));
        ::unlink(address.path.c_str());
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) throw GdbServerError(fmt::format("socket: {}", std::strerror(errno)));
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&name), sizeof(name)) < 0)
        throw GdbServerError(fmt::format("{}: {}", address.path, std::strerror(errno)));
    if (::listen(fd.get(), 1) < 0) throw GdbServerError(fmt::format("listen: {}", std::strerror(errno)));
    return fd;
}

}  // namespace

GdbServer::GdbServer(const GdbAddress& address, KvmGdbTarget& target, VcpuGate& gate)
    : address_(address), target_(target), gate_(gate), wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!wake_) throw GdbServerError(fmt::format("eventfd: {}", std::strerror(errno)));
    listener_ = address_.kind == GdbAddress::Kind::Tcp ? listen_tcp(address_) : listen_unix(address_);
}

GdbServer::~GdbServer() {
    if (thread_.joinable()) finish(-1);
    if (address_.kind == GdbAddress::Kind::Unix && listener_) ::unlink(address_.path.c_str());
}

void GdbServer::start() {
    spdlog::info("gdb: listening on {}", address_.text());
    thread_ = std::thread([this] { serve(); });
}

void GdbServer::finish(int status) {
    if (!thread_.joinable()) return;
    final_status_ = status;
    gate_.shut_down();  // a server waiting for vCPUs to park stops waiting
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof(one));
    thread_.join();
}

void GdbServer::send(const std::string& bytes) {
    size_t done = 0;
    while (client_ && done < bytes.size()) {
        const ssize_t n = ::send(client_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // the read side sees the connection end
        done += static_cast<size_t>(n);
    }
}

void GdbServer::serve() {
    try {
        for (;;) {
            pollfd fds[4] = {{wake_.get(), POLLIN, 0},
                             {listener_.get(), POLLIN, 0},
                             {target_.stop_fd(), POLLIN, 0},
                             {client_ ? client_.get() : -1, POLLIN, 0}};
            if (::poll(fds, 4, -1) < 0) {
                if (errno == EINTR) continue;
                throw std::system_error(errno, std::generic_category(), "poll");
            }
            if (fds[0].revents & POLLIN) break;
            if (fds[2].revents & POLLIN) take_stop();
            if (fds[3].revents & (POLLIN | POLLHUP | POLLERR)) {
                if (!read_client()) close_client(true);
            }
            if (fds[1].revents & POLLIN) accept_client();
        }
    } catch (const std::exception& error) {
        spdlog::error("gdb: server stopped: {}", error.what());
    }
    // The VM is over. A gdb waiting on the running guest hears how it ended.
    if (session_ && session_->state() == GdbSession::State::Running && final_status_ >= 0) {
        std::string out;
        session_->exited(static_cast<uint8_t>(final_status_ & 0xff), out);
        send(out);
    }
    session_.reset();
    client_.reset();
}

void GdbServer::accept_client() {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) return;
    if (client_) {
        static const char kBusy[] = "minikvm: a gdb is already attached\n";
        [[maybe_unused]] ssize_t n = ::send(fd.get(), kBusy, sizeof(kBusy) - 1, MSG_NOSIGNAL);
        spdlog::warn("gdb: refused a second connection on {}: one gdb at a time", address_.text());
        return;
    }
    if (address_.kind == GdbAddress::Kind::Tcp) {
        int one = 1;
        ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    // gdb finds the target stopped when it attaches.
    gate_.close();
    if (!gate_.wait_parked()) return;  // the VM is ending
    target_.clear_stop_fd();
    std::optional<StopEvent> pending = target_.take_stop();
    client_ = std::move(fd);
    session_.emplace(target_, pending.value_or(StopEvent{target_.current_thread(), StopReason::Halted}));
    spdlog::info("gdb: attached on {}; every vCPU stopped", address_.text());
}

bool GdbServer::read_client() {
    char buffer[4096];
    ssize_t n = ::recv(client_.get(), buffer, sizeof(buffer), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (n <= 0) return false;
    std::string out;
    session_->receive(std::string_view(buffer, static_cast<size_t>(n)), out);
    send(out);
    switch (session_->state()) {
        case GdbSession::State::Detached:
            spdlog::info("gdb: detached; the guest runs on");
            close_client(false);
            break;
        case GdbSession::State::Killed:
            spdlog::info("gdb: kill");
            close_client(false);
            break;
        default:
            break;
    }
    return true;
}

void GdbServer::take_stop() {
    target_.clear_stop_fd();
    if (!gate_.wait_parked()) return;
    std::optional<StopEvent> event = target_.take_stop();
    if (!event) return;
    if (!session_ || session_->state() != GdbSession::State::Running) {
        // Nobody to tell (gdb left while the stop was on its way): run on.
        if (!session_) gate_.open_all();
        return;
    }
    std::string out;
    session_->stopped(*event, out);
    send(out);
}

void GdbServer::close_client(bool lost) {
    if (lost && session_) {
        const auto state = session_->state();
        if (state == GdbSession::State::Running || state == GdbSession::State::Stopped) {
            spdlog::info("gdb: connection lost; breakpoints removed, the guest runs on");
            gate_.close();
            if (gate_.wait_parked()) session_->disconnected();
        }
    }
    session_.reset();
    client_.reset();
}

}  // namespace minikvm::gdb
