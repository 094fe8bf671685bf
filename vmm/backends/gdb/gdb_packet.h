#pragma once
// The framing of GDB's remote serial protocol (gdb manual, "Overview" of
// the remote protocol): `$payload#cc` with a two-hex-digit modulo-256 sum of
// the payload bytes as sent, `}` escaping (the next byte XOR 0x20), `+`/`-`
// acknowledgements, and a bare 0x03 byte for Ctrl-C.
//
// The decoder takes the byte stream in chunks of any size and never stores
// more than kMaxPacketSize bytes: a longer packet is consumed without being
// kept and reported as too long. A `$` inside a packet starts a new one (an
// unescaped `$` never belongs to a payload), so the decoder finds its feet
// after line noise. Run-length encoding is for replies only (the manual's
// words), so a `*` from gdb is an ordinary byte; the encoder does not use it.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace minikvm::gdb {

// The longest payload accepted, counted as sent (escapes included); what
// qSupported advertises as PacketSize, which gdb then never exceeds.
inline constexpr size_t kMaxPacketSize = 0x4000;

struct InputEvent {
    enum class Kind {
        Packet,       // a whole packet with a good checksum: acknowledge and handle
        BadChecksum,  // corrupted: ask for it again with `-`
        TooLong,      // a good checksum over more than kMaxPacketSize bytes: acknowledged, refused
        Interrupt,    // Ctrl-C between packets
        Ack,
        Nack,         // gdb wants the last reply again
    };
    Kind kind;
    std::string payload;  // unescaped; Packet only
};

class PacketDecoder {
public:
    // Appends an event for each thing completed in `bytes`; keeps a partial packet for the next call.
    void feed(std::span<const uint8_t> bytes, std::vector<InputEvent>& events);
    void feed(std::string_view bytes, std::vector<InputEvent>& events) {
        feed(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), events);
    }

private:
    enum class State { Idle, Payload, Escape, Checksum };

    void start_packet();
    void finish_packet(std::vector<InputEvent>& events);

    State state_ = State::Idle;
    std::string payload_;
    size_t raw_length_ = 0;  // bytes as sent, escapes included
    uint8_t sum_ = 0;
    bool broken_ = false;     // an escape ran into the `#`
    int checksum_digits_ = 0;
    uint8_t checksum_ = 0;
    bool checksum_valid_ = true;
};

// `$payload#cc`, escaping `$`, `#`, `}` and `*` (so nothing reads as a frame
// character or a run-length mark).
std::string encode_packet(std::string_view payload);

}  // namespace minikvm::gdb
