#include "vmm/backends/gdb/gdb_session.h"

#include <algorithm>
#include <vector>

#include "vmm/backends/gdb/gdb_hex.h"
#include "vmm/backends/gdb/x86_target_xml.h"

namespace minikvm::gdb {

namespace {

constexpr uint8_t kSigInt = 2;
constexpr uint8_t kSigTrap = 5;
constexpr size_t kMaxThreadNameBytes = 256;
// Binary replies (qXfer) may double when escaped: with its 'm'/'l', a
// chunk stays within PacketSize, which gdb's own buffers start at.
constexpr uint64_t kMaxXferChunk = kMaxPacketSize / 2 - 1;

std::string error_reply(uint8_t error) {
    std::string reply = "E";
    append_hex_byte(reply, error);
    return reply;
}

std::string supported_reply() {
    std::string reply = "PacketSize=";
    append_hex_number(reply, kMaxPacketSize);
    return reply + ";qXfer:features:read+;QStartNoAckMode+;swbreak+;hwbreak+";
}

}  // namespace

GdbSession::GdbSession(GdbTarget& target, const StopEvent& initial) : target_(target), last_stop_(initial) {}

void GdbSession::receive(std::span<const uint8_t> bytes, std::string& out) {
    std::vector<InputEvent> events;
    decoder_.feed(bytes, events);
    for (InputEvent& event : events) {
        if (state_ == State::Detached || state_ == State::Killed || state_ == State::Exited) return;
        switch (event.kind) {
            case InputEvent::Kind::Packet:
                if (ack_mode_) out += '+';
                handle_packet(event.payload, out);
                break;
            case InputEvent::Kind::BadChecksum:
                if (ack_mode_) out += '-';
                break;
            case InputEvent::Kind::TooLong:
                if (ack_mode_) out += '+';
                if (state_ == State::Stopped) send(error_reply(kErrorTooBig), out);
                break;
            case InputEvent::Kind::Interrupt:
                if (state_ == State::Running) target_.interrupt();
                break;
            case InputEvent::Kind::Nack:
                if (ack_mode_) out += last_reply_;
                break;
            case InputEvent::Kind::Ack:
                break;
        }
    }
}

void GdbSession::handle_packet(std::string_view payload, std::string& out) {
    // All-stop: while the target runs gdb only waits for the stop reply (and
    // may send Ctrl-C); a command now could not be answered in order.
    if (state_ != State::Stopped) return;
    Command command = parse_command(payload);
    auto reply = std::visit([this](const auto& c) { return handle(c); }, command);
    if (reply) send(*reply, out);
}

void GdbSession::send(std::string_view payload, std::string& out) {
    std::string framed = encode_packet(payload);
    out += framed;
    if (ack_mode_) last_reply_ = std::move(framed);
}

void GdbSession::stopped(const StopEvent& event, std::string& out) {
    if (state_ != State::Running) return;
    state_ = State::Stopped;
    last_stop_ = event;
    send(stop_reply(event), out);
}

void GdbSession::exited(uint8_t status, std::string& out) {
    if (state_ != State::Running && state_ != State::Stopped) return;
    state_ = State::Exited;
    std::string reply = "W";
    append_hex_byte(reply, status);
    send(reply, out);
}

void GdbSession::disconnected() {
    if (state_ != State::Running && state_ != State::Stopped) return;
    // A running target is stopped by the caller before this (the session
    // changes breakpoints only while everything is stopped).
    remove_all_breakpoints();
    target_.detach();
    state_ = State::Detached;
}

std::optional<ThreadId> GdbSession::resolve(const ThreadSelector& selector) const {
    std::vector<ThreadId> threads = target_.threads();
    if (selector.kind == ThreadSelector::Kind::One) {
        if (std::find(threads.begin(), threads.end(), selector.id) == threads.end()) return std::nullopt;
        return selector.id;
    }
    // "Any" and "all": the thread that stopped, which gdb calls current.
    if (std::find(threads.begin(), threads.end(), last_stop_.thread) != threads.end()) return last_stop_.thread;
    if (threads.empty()) return std::nullopt;
    return threads.front();
}

std::string GdbSession::stop_reply(const StopEvent& event) const {
    std::string reply = "T";
    append_hex_byte(reply, event.reason == StopReason::Interrupted ? kSigInt : kSigTrap);
    reply += "thread:";
    append_hex_number(reply, event.thread);
    reply += ';';
    switch (event.reason) {
        case StopReason::SoftwareBreakpoint:
            if (gdb_swbreak_) reply += "swbreak:;";
            break;
        case StopReason::HardwareBreakpoint:
            if (gdb_hwbreak_) reply += "hwbreak:;";
            break;
        case StopReason::Watchpoint:
            reply += event.watch_type == BreakpointType::ReadWatch     ? "rwatch:"
                     : event.watch_type == BreakpointType::AccessWatch ? "awatch:"
                                                                       : "watch:";
            append_hex_number(reply, event.watch_address);
            reply += ';';
            break;
        default:
            break;
    }
    return reply;
}

void GdbSession::remove_all_breakpoints() {
    for (const Inserted& breakpoint : breakpoints_)
        target_.remove_breakpoint(breakpoint.type, breakpoint.address, breakpoint.kind);
    breakpoints_.clear();
}

bool GdbSession::start(std::span<const ThreadAction> actions) {
    if (!target_.resume(actions)) return false;
    state_ = State::Running;
    return true;
}

std::optional<std::string> GdbSession::handle(const cmd::HaltReason&) { return stop_reply(last_stop_); }

std::optional<std::string> GdbSession::handle(const cmd::ReadRegisters&) {
    auto thread = resolve(general_thread_);
    if (!thread) return error_reply(kErrorNoThread);
    auto registers = target_.read_registers(*thread);
    if (!registers) return error_reply(kErrorPermission);
    return hex_bytes(registers->image());
}

std::optional<std::string> GdbSession::handle(const cmd::WriteRegisters& command) {
    if (command.image.size() != X86RegisterFile::kBytes) return error_reply(kErrorInvalid);
    auto thread = resolve(general_thread_);
    if (!thread) return error_reply(kErrorNoThread);
    X86RegisterFile registers;
    std::copy(command.image.begin(), command.image.end(), registers.image().begin());
    return target_.write_registers(*thread, registers) ? "OK" : error_reply(kErrorPermission);
}

std::optional<std::string> GdbSession::handle(const cmd::ReadRegister& command) {
    auto slot = x86_register_slot(command.number);
    if (!slot) return error_reply(kErrorInvalid);
    auto thread = resolve(general_thread_);
    if (!thread) return error_reply(kErrorNoThread);
    auto registers = target_.read_registers(*thread);
    if (!registers) return error_reply(kErrorPermission);
    return hex_bytes(registers->image().subspan(slot->offset, slot->size));
}

std::optional<std::string> GdbSession::handle(const cmd::WriteRegister& command) {
    auto slot = x86_register_slot(command.number);
    if (!slot || command.value.size() != slot->size) return error_reply(kErrorInvalid);
    auto thread = resolve(general_thread_);
    if (!thread) return error_reply(kErrorNoThread);
    auto registers = target_.read_registers(*thread);
    if (!registers) return error_reply(kErrorPermission);
    std::copy(command.value.begin(), command.value.end(), registers->image().begin() + slot->offset);
    return target_.write_registers(*thread, *registers) ? "OK" : error_reply(kErrorPermission);
}

std::optional<std::string> GdbSession::handle(const cmd::ReadMemory& command) {
    // An empty hex reply would read as "not supported".
    if (command.length == 0) return error_reply(kErrorInvalid);
    auto thread = resolve(general_thread_);
    if (!thread) return error_reply(kErrorNoThread);
    std::vector<uint8_t> data(command.length);  // at most kMaxMemoryTransfer (the parser's rule)
    size_t done = std::min(target_.read_memory(*thread, command.address, data), data.size());
    // A short read is a valid reply; none at all is a fault.
    if (done == 0) return error_reply(kErrorFault);
    return hex_bytes(std::span(data).first(done));
}

std::optional<std::string> GdbSession::handle(const cmd::WriteMemory& command) {
    if (command.data.empty()) return "OK";  // gdb's probe for X
    auto thread = resolve(general_thread_);
    if (!thread) return error_reply(kErrorNoThread);
    size_t done = target_.write_memory(*thread, command.address, command.data);
    return done == command.data.size() ? "OK" : error_reply(kErrorFault);
}

std::optional<std::string> GdbSession::handle(const cmd::Resume& command) {
    auto selected = resolve(continue_thread_);
    if (!selected) return error_reply(kErrorNoThread);
    if (command.has_address) {
        auto registers = target_.read_registers(*selected);
        if (!registers) return error_reply(kErrorPermission);
        registers->set(X86Reg::Rip, command.address);
        if (!target_.write_registers(*selected, *registers)) return error_reply(kErrorPermission);
    }
    // c runs everything; s steps the selected thread alone, so a step ends
    // where the user expects even with other vCPUs busy.
    std::vector<ThreadAction> actions;
    for (ThreadId thread : target_.threads()) {
        ThreadAction::Kind kind = ThreadAction::Kind::Continue;
        if (command.kind == ResumeKind::Step)
            kind = thread == *selected ? ThreadAction::Kind::Step : ThreadAction::Kind::Stay;
        actions.push_back({thread, kind});
    }
    if (!start(actions)) return error_reply(kErrorPermission);
    return std::nullopt;
}

std::optional<std::string> GdbSession::handle(const cmd::VContQuery&) { return "vCont;c;C;s;S"; }

std::optional<std::string> GdbSession::handle(const cmd::VCont& command) {
    std::vector<ThreadId> threads = target_.threads();
    for (const cmd::VContAction& action : command.actions)
        if (action.thread.kind == ThreadSelector::Kind::One && !resolve(action.thread))
            return error_reply(kErrorNoThread);
    auto current = resolve(ThreadSelector{});
    // Each thread takes the first action that names it (gdb manual, vCont).
    std::vector<ThreadAction> actions;
    bool any_runs = false;
    for (ThreadId thread : threads) {
        ThreadAction::Kind kind = ThreadAction::Kind::Stay;
        for (const cmd::VContAction& action : command.actions) {
            bool names = action.thread.kind == ThreadSelector::Kind::All ||
                         (action.thread.kind == ThreadSelector::Kind::One && action.thread.id == thread) ||
                         (action.thread.kind == ThreadSelector::Kind::Any && current == thread);
            if (!names) continue;
            kind = action.kind == ResumeKind::Step ? ThreadAction::Kind::Step : ThreadAction::Kind::Continue;
            break;
        }
        any_runs = any_runs || kind != ThreadAction::Kind::Stay;
        actions.push_back({thread, kind});
    }
    // Nothing would run, so no stop would ever answer it.
    if (!any_runs) return error_reply(kErrorInvalid);
    if (!start(actions)) return error_reply(kErrorPermission);
    return std::nullopt;
}

std::optional<std::string> GdbSession::handle(const cmd::Breakpoint& command) {
    Inserted key{command.type, command.address, command.kind};
    // Inserting or removing twice is harmless, as the manual asks of Z/z.
    bool known = breakpoints_.count(key) != 0;
    if (command.insert) {
        if (known) return "OK";
        if (breakpoints_.size() >= kMaxBreakpoints) return error_reply(kErrorTooBig);
    } else if (!known) {
        return "OK";
    }
    TargetStatus status = command.insert ? target_.insert_breakpoint(command.type, command.address, command.kind)
                                         : target_.remove_breakpoint(command.type, command.address, command.kind);
    if (status == TargetStatus::Unsupported) return "";
    if (status == TargetStatus::Error) return error_reply(kErrorPermission);
    if (command.insert) breakpoints_.insert(key);
    else breakpoints_.erase(key);
    return "OK";
}

std::optional<std::string> GdbSession::handle(const cmd::SelectThread& command) {
    if (command.thread.kind == ThreadSelector::Kind::One && !resolve(command.thread))
        return error_reply(kErrorNoThread);
    (command.operation == 'g' ? general_thread_ : continue_thread_) = command.thread;
    return "OK";
}

std::optional<std::string> GdbSession::handle(const cmd::ThreadAlive& command) {
    if (command.thread.kind != ThreadSelector::Kind::One || !resolve(command.thread))
        return error_reply(kErrorNoThread);
    return "OK";
}

std::optional<std::string> GdbSession::handle(const cmd::ThreadInfoFirst&) {
    thread_info_next_ = 0;
    return handle(cmd::ThreadInfoNext{});
}

std::optional<std::string> GdbSession::handle(const cmd::ThreadInfoNext&) {
    std::vector<ThreadId> threads = target_.threads();
    if (thread_info_next_ >= threads.size()) return "l";
    // As many ids as fit in half a packet; qsThreadInfo asks for the rest.
    std::string reply = "m";
    for (; thread_info_next_ < threads.size() && reply.size() < kMaxPacketSize / 2; ++thread_info_next_) {
        if (reply.size() > 1) reply += ',';
        append_hex_number(reply, threads[thread_info_next_]);
    }
    return reply;
}

std::optional<std::string> GdbSession::handle(const cmd::CurrentThread&) {
    auto thread = resolve(ThreadSelector{});
    if (!thread) return error_reply(kErrorNoThread);
    std::string reply = "QC";
    append_hex_number(reply, *thread);
    return reply;
}

std::optional<std::string> GdbSession::handle(const cmd::ThreadExtraInfo& command) {
    if (command.thread.kind != ThreadSelector::Kind::One) return error_reply(kErrorNoThread);
    auto thread = resolve(command.thread);
    if (!thread) return error_reply(kErrorNoThread);
    std::string name = target_.thread_name(*thread);
    name.resize(std::min(name.size(), kMaxThreadNameBytes));
    return hex_bytes(std::span(reinterpret_cast<const uint8_t*>(name.data()), name.size()));
}

std::optional<std::string> GdbSession::handle(const cmd::Supported& command) {
    gdb_swbreak_ = command.swbreak;
    gdb_hwbreak_ = command.hwbreak;
    return supported_reply();
}

std::optional<std::string> GdbSession::handle(const cmd::ReadFeatures& command) {
    if (command.annex != "target.xml") return error_reply(0);  // E00: no such annex
    std::string xml = x86_target_xml();
    if (command.offset >= xml.size()) return "l";
    uint64_t length = std::min({command.length, kMaxXferChunk, xml.size() - command.offset});
    bool last = command.offset + length >= xml.size();
    return (last ? "l" : "m") + xml.substr(command.offset, length);
}

// Attached to an existing machine: gdb detaches on quit, never kills it.
std::optional<std::string> GdbSession::handle(const cmd::Attached&) { return "1"; }

std::optional<std::string> GdbSession::handle(const cmd::Detach&) {
    remove_all_breakpoints();
    target_.detach();
    state_ = State::Detached;
    return "OK";
}

std::optional<std::string> GdbSession::handle(const cmd::Kill& command) {
    target_.kill();
    state_ = State::Killed;
    if (command.needs_reply) return "OK";
    return std::nullopt;  // `k` has no reply
}

std::optional<std::string> GdbSession::handle(const cmd::StartNoAckMode&) {
    // This reply still goes out after a `+`; acknowledgements stop after it.
    ack_mode_ = false;
    last_reply_.clear();
    return "OK";
}

std::optional<std::string> GdbSession::handle(const cmd::Unknown&) { return ""; }

std::optional<std::string> GdbSession::handle(const cmd::Invalid& command) { return error_reply(command.error); }

}  // namespace minikvm::gdb
