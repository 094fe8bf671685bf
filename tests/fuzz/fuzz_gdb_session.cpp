// libFuzzer target: the gdb stub's pure half (vmm/backends/gdb) -- the
// packet decoder, the command parser and the session -- against a fake
// target that aborts if the session breaks its promises (touching a
// running target, removing a breakpoint it never inserted, a resume that
// does not name every thread once). The input is a series of steps:
//   0: a payload the harness frames correctly (so most steps reach the parser)
//   1: raw bytes, as a broken or hostile client would send them
//   2: the target stops, for a reason the input picks
//   3: the guest exits or gdb disconnects (ends the input)
// Checked on every step: what the session writes back is only `+`/`-` and
// well-formed packets, none longer than PacketSize.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tests/unit/fake_gdb_target.h"
#include "vmm/backends/gdb/gdb_command.h"
#include "vmm/backends/gdb/gdb_packet.h"
#include "vmm/backends/gdb/gdb_session.h"

using namespace minikvm::gdb;

namespace {

struct Input {
    const uint8_t* data;
    size_t size;
    size_t at = 0;

    bool empty() const { return at >= size; }
    uint8_t byte() { return empty() ? 0 : data[at++]; }
    std::string_view bytes(size_t count) {
        count = std::min(count, size - at);
        std::string_view out(reinterpret_cast<const char*>(data + at), count);
        at += count;
        return out;
    }
};

void check_output(const std::string& out) {
    PacketDecoder decoder;
    std::vector<InputEvent> events;
    decoder.feed(out, events);
    for (const InputEvent& event : events) {
        if (event.kind != InputEvent::Kind::Packet && event.kind != InputEvent::Kind::Ack &&
            event.kind != InputEvent::Kind::Nack)
            std::abort();
    }
}

StopEvent stop_event(Input& input, size_t threads) {
    StopEvent event{static_cast<ThreadId>(1 + input.byte() % threads), StopReason::Halted};
    event.reason = static_cast<StopReason>(input.byte() % 6);
    event.watch_type = static_cast<BreakpointType>(2 + input.byte() % 3);
    event.watch_address = input.byte() * 0x1000u;
    return event;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Input input{data, size};
    size_t threads = 1 + input.byte() % 4;
    FakeGdbTarget target(threads);
    GdbSession session(target, StopEvent{1, StopReason::Halted});

    while (!input.empty()) {
        std::string out;
        uint8_t step = input.byte();
        size_t length = input.byte();
        if (step & 0x80) length = length << 8 | input.byte();  // now and then a long one
        switch (step & 3) {
            case 0: {
                std::string_view payload = input.bytes(length);
                // Parsing alone, then through the session.
                (void)parse_command(payload);
                session.receive(encode_packet(payload), out);
                break;
            }
            case 1:
                session.receive(input.bytes(length), out);
                break;
            case 2:
                if (target.running) {
                    target.stop();
                    session.stopped(stop_event(input, threads), out);
                }
                break;
            case 3:
                if (target.running) target.stop();
                if (length & 1) session.exited(static_cast<uint8_t>(length), out);
                else session.disconnected();
                check_output(out);
                return 0;
        }
        check_output(out);
    }
    return 0;
}
