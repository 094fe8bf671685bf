#include "vmm/backends/gdb/gdb_packet.h"

#include "vmm/backends/gdb/gdb_hex.h"

namespace minikvm::gdb {

namespace {
constexpr uint8_t kEscape = '}';
constexpr uint8_t kEscapeXor = 0x20;
constexpr uint8_t kInterrupt = 0x03;
}  // namespace

void PacketDecoder::start_packet() {
    state_ = State::Payload;
    payload_.clear();
    raw_length_ = 0;
    sum_ = 0;
    broken_ = false;
}

void PacketDecoder::finish_packet(std::vector<InputEvent>& events) {
    state_ = State::Idle;
    bool good = checksum_valid_ && checksum_ == sum_ && !broken_;
    if (!good) {
        events.push_back({InputEvent::Kind::BadChecksum, {}});
    } else if (raw_length_ > kMaxPacketSize) {
        events.push_back({InputEvent::Kind::TooLong, {}});
    } else {
        events.push_back({InputEvent::Kind::Packet, std::move(payload_)});
    }
    payload_.clear();
}

void PacketDecoder::feed(std::span<const uint8_t> bytes, std::vector<InputEvent>& events) {
    for (uint8_t byte : bytes) {
        switch (state_) {
            case State::Idle:
                if (byte == '$') start_packet();
                else if (byte == '+') events.push_back({InputEvent::Kind::Ack, {}});
                else if (byte == '-') events.push_back({InputEvent::Kind::Nack, {}});
                else if (byte == kInterrupt) events.push_back({InputEvent::Kind::Interrupt, {}});
                // Anything else between packets is line noise.
                break;
            case State::Payload:
            case State::Escape:
                if (byte == '$') {
                    start_packet();  // the previous packet was cut short
                    break;
                }
                if (byte == '#') {
                    broken_ = broken_ || state_ == State::Escape;
                    state_ = State::Checksum;
                    checksum_digits_ = 0;
                    checksum_ = 0;
                    checksum_valid_ = true;
                    break;
                }
                sum_ = static_cast<uint8_t>(sum_ + byte);
                ++raw_length_;
                if (state_ == State::Escape) {
                    byte ^= kEscapeXor;
                    state_ = State::Payload;
                } else if (byte == kEscape) {
                    state_ = State::Escape;
                    break;
                }
                // Past the limit the packet is still read to its end (to
                // answer it in step), but nothing more is kept.
                if (raw_length_ <= kMaxPacketSize) payload_ += static_cast<char>(byte);
                break;
            case State::Checksum: {
                int digit = hex_digit_value(static_cast<char>(byte));
                if (digit < 0) checksum_valid_ = false;
                checksum_ = static_cast<uint8_t>(checksum_ << 4 | (digit < 0 ? 0 : digit));
                if (++checksum_digits_ == 2) finish_packet(events);
                break;
            }
        }
    }
}

std::string encode_packet(std::string_view payload) {
    std::string out = "$";
    uint8_t sum = 0;
    auto put = [&](char c) {
        out += c;
        sum = static_cast<uint8_t>(sum + static_cast<uint8_t>(c));
    };
    for (char c : payload) {
        if (c == '$' || c == '#' || c == '}' || c == '*') {
            put(static_cast<char>(kEscape));
            put(static_cast<char>(c ^ kEscapeXor));
        } else {
            put(c);
        }
    }
    out += '#';
    append_hex_byte(out, sum);
    return out;
}

}  // namespace minikvm::gdb
