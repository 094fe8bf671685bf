#include <catch2/catch.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "vmm/backends/gdb/gdb_packet.h"

using namespace minikvm::gdb;
using Kind = InputEvent::Kind;

namespace {

std::vector<InputEvent> decode(std::string_view bytes) {
    PacketDecoder decoder;
    std::vector<InputEvent> events;
    decoder.feed(bytes, events);
    return events;
}

// Frames `raw` (already escaped, if it should be) with its checksum.
std::string frame_raw(const std::string& raw) {
    unsigned sum = 0;
    for (char c : raw) sum += static_cast<uint8_t>(c);
    char digits[3];
    std::snprintf(digits, sizeof digits, "%02x", sum & 0xff);
    return "$" + raw + "#" + digits;
}

}  // namespace

TEST_CASE("gdb packet: frames with the modulo-256 checksum") {
    CHECK(encode_packet("OK") == "$OK#9a");
    CHECK(encode_packet("") == "$#00");
    // $ # } * are escaped as } and the byte XOR 0x20.
    CHECK(encode_packet("a$b#c}d*") == frame_raw("a}\x04" "b}\x03" "c}]d}\x0a"));
}

TEST_CASE("gdb packet: every byte value survives encode and decode") {
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    auto events = decode(encode_packet(all));
    REQUIRE(events.size() == 1);
    CHECK(events[0].kind == Kind::Packet);
    CHECK(events[0].payload == all);
}

TEST_CASE("gdb packet: chunks of any size give the same events") {
    std::string stream = "+" + encode_packet("qSupported:swbreak+") + "-\x03" + encode_packet("m1000,4") + "+";
    auto whole = decode(stream);
    REQUIRE(whole.size() == 6);
    CHECK(whole[0].kind == Kind::Ack);
    CHECK(whole[1].kind == Kind::Packet);
    CHECK(whole[1].payload == "qSupported:swbreak+");
    CHECK(whole[2].kind == Kind::Nack);
    CHECK(whole[3].kind == Kind::Interrupt);
    CHECK(whole[4].payload == "m1000,4");
    CHECK(whole[5].kind == Kind::Ack);
    for (size_t chunk = 1; chunk < 7; ++chunk) {
        PacketDecoder decoder;
        std::vector<InputEvent> events;
        for (size_t at = 0; at < stream.size(); at += chunk)
            decoder.feed(std::string_view(stream).substr(at, chunk), events);
        REQUIRE(events.size() == whole.size());
        for (size_t i = 0; i < events.size(); ++i) {
            CHECK(events[i].kind == whole[i].kind);
            CHECK(events[i].payload == whole[i].payload);
        }
    }
}

TEST_CASE("gdb packet: a wrong or unreadable checksum asks for the packet again") {
    CHECK(decode("$OK#9b")[0].kind == Kind::BadChecksum);
    CHECK(decode("$OK#zz")[0].kind == Kind::BadChecksum);
    CHECK(decode("$OK#9A")[0].kind == Kind::Packet);  // either case of hex digits
    // An escape cut off by the end of the packet.
    CHECK(decode(frame_raw("ab}"))[0].kind == Kind::BadChecksum);
}

TEST_CASE("gdb packet: a $ inside a packet starts a new one; noise between packets is dropped") {
    auto events = decode("$m10$g#67");
    REQUIRE(events.size() == 1);
    CHECK(events[0].payload == "g");
    events = decode("garbage\r\n" + encode_packet("?") + "x");
    REQUIRE(events.size() == 1);
    CHECK(events[0].payload == "?");
    // 0x03 inside a packet is data (X packets carry raw bytes), not Ctrl-C.
    events = decode(encode_packet("X0,1:\x03"));
    REQUIRE(events.size() == 1);
    CHECK(events[0].kind == Kind::Packet);
    // '*' from gdb is an ordinary byte: run-length encoding is for replies.
    CHECK(decode(frame_raw("a*b"))[0].payload == "a*b");
}

TEST_CASE("gdb packet: the size limit holds without buffering the excess") {
    std::string largest(kMaxPacketSize, 'a');
    auto events = decode(encode_packet(largest));
    REQUIRE(events.size() == 1);
    CHECK(events[0].kind == Kind::Packet);
    CHECK(events[0].payload.size() == kMaxPacketSize);

    // One byte more, or escapes that make the sent form longer than the limit.
    std::string longer(kMaxPacketSize + 1, 'a');
    std::string escaped(kMaxPacketSize / 2 + 1, '}');
    for (const std::string& payload : {longer, escaped}) {
        PacketDecoder decoder;
        std::vector<InputEvent> out;
        decoder.feed(encode_packet(payload) + encode_packet("g"), out);
        REQUIRE(out.size() == 2);
        CHECK(out[0].kind == Kind::TooLong);
        CHECK(out[0].payload.empty());
        CHECK(out[1].kind == Kind::Packet);  // the decoder is in step afterwards
        CHECK(out[1].payload == "g");
    }
    // Corrupted as well as too long: a checksum failure.
    std::string bad = encode_packet(longer);
    bad.back() = bad.back() == '0' ? '1' : '0';
    CHECK(decode(bad)[0].kind == Kind::BadChecksum);
}

TEST_CASE("gdb packet: a megabyte with no end stays within the limit") {
    PacketDecoder decoder;
    std::vector<InputEvent> events;
    decoder.feed("$", events);
    std::string junk(4096, 'x');
    for (int i = 0; i < 256; ++i) decoder.feed(junk, events);
    CHECK(events.empty());
    decoder.feed("#00", events);  // 2^20 times 'x' sums to 0 modulo 256
    REQUIRE(events.size() == 1);
    CHECK(events[0].kind == Kind::TooLong);
}
