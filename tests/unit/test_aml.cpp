#include <catch2/catch.hpp>

#include <stdexcept>

#include "boot/aml.h"
#include "aml_reader.h"

using namespace minikvm;
using aml::Bytes;

namespace {

Bytes seg(const char (&text)[5]) { return Bytes(text, text + 4); }

Bytes join(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const Bytes& part : parts) aml::append(out, part);
    return out;
}

// Decodes `encoded` back with the test reader: the value and the bytes used.
std::pair<size_t, size_t> decode_pkg_length(const Bytes& encoded) {
    size_t at = 0;
    const size_t value = aml_reader::read_pkg_length(encoded, at);
    return {value, at};
}

}  // namespace

TEST_CASE("PkgLength counts its own bytes and grows at 63, 4095 and 1 MiB - 1") {
    CHECK(aml::pkg_length(0) == Bytes{0x01});
    CHECK(aml::pkg_length(62) == Bytes{0x3f});  // 63 in one byte: the largest
    CHECK(aml::pkg_length(63) == Bytes{0x41, 0x04});  // 65 = 0x041: low nybble in the lead byte
    CHECK(aml::pkg_length(4093) == Bytes{0x4f, 0xff});  // 4095 in two bytes: the largest
    CHECK(aml::pkg_length(4094) == Bytes{0x81, 0x00, 0x01});  // 4097 = 0x1001
    CHECK(aml::pkg_length(0xf'fffc) == Bytes{0x8f, 0xff, 0xff});  // 1 MiB - 1 in three bytes
    CHECK(aml::pkg_length(0xf'fffd) == Bytes{0xc1, 0x00, 0x00, 0x01});  // 1 MiB + 1
    CHECK(aml::pkg_length(0xfff'fffb) == Bytes{0xcf, 0xff, 0xff, 0xff});  // 2^28 - 1: the AML maximum
    CHECK_THROWS_AS(aml::pkg_length(0xfff'fffc), std::length_error);
}

TEST_CASE("PkgLength decodes to contents plus itself around every boundary") {
    for (size_t boundary : {size_t{63}, size_t{4095}, size_t{0xf'ffff}}) {
        for (size_t content = boundary - 5; content <= boundary + 5; ++content) {
            const Bytes encoded = aml::pkg_length(content);
            const auto [value, used] = decode_pkg_length(encoded);
            CHECK(used == encoded.size());
            CHECK(value == content + encoded.size());
        }
    }
}

TEST_CASE("integers use the shortest encoding") {
    CHECK(aml::integer(0) == Bytes{0x00});  // ZeroOp
    CHECK(aml::integer(1) == Bytes{0x01});  // OneOp
    CHECK(aml::integer(2) == Bytes{0x0a, 0x02});
    CHECK(aml::integer(0xff) == Bytes{0x0a, 0xff});
    CHECK(aml::integer(0x100) == Bytes{0x0b, 0x00, 0x01});
    CHECK(aml::integer(0xffff) == Bytes{0x0b, 0xff, 0xff});
    CHECK(aml::integer(0x1'0000) == Bytes{0x0c, 0x00, 0x00, 0x01, 0x00});
    CHECK(aml::integer(0xffff'ffff) == Bytes{0x0c, 0xff, 0xff, 0xff, 0xff});
    CHECK(aml::integer(0x1'0000'0000) == Bytes{0x0e, 0, 0, 0, 0, 1, 0, 0, 0});
}

TEST_CASE("name strings: padded segments, root, dual and multi paths") {
    CHECK(aml::name_string("_UID") == seg("_UID"));
    CHECK(aml::name_string("_SB") == seg("_SB_"));
    CHECK(aml::name_string("\\_SB") == join({{'\\'}, seg("_SB_")}));
    CHECK(aml::name_string("\\_SB.PCI0") == join({{'\\', 0x2e}, seg("_SB_"), seg("PCI0")}));
    CHECK(aml::name_string("\\_SB.PCI0.S1") == join({{'\\', 0x2f, 3}, seg("_SB_"), seg("PCI0"), seg("S1__")}));
    CHECK(aml::name_string("\\") == Bytes{'\\', 0x00});
    for (const char* bad : {"", "1ABC", "ABCDE", "pci0", "A..B", "A.", "\\.A", "A-B"})
        CHECK_THROWS_AS(aml::name_string(bad), std::invalid_argument);
}

TEST_CASE("EisaId compresses the vendor letters and is always a DWord") {
    CHECK(aml::eisa_id("PNP0A03") == Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x03});  // DWord 0x030ad041
    CHECK(aml::eisa_id("PNP0000") == Bytes{0x0c, 0x41, 0xd0, 0x00, 0x00});
    for (const char* bad : {"PNP0A0", "PNP0A033", "pnp0A03", "PNP0A0G", "P1P0A03"})
        CHECK_THROWS_AS(aml::eisa_id(bad), std::invalid_argument);
}

TEST_CASE("Name, Package and Buffer encode as in ASL") {
    CHECK(aml::name("_UID", aml::integer(0)) == join({{0x08}, seg("_UID"), {0x00}}));
    CHECK(aml::package({aml::integer(1), aml::integer(2)}) == Bytes{0x12, 0x05, 0x02, 0x01, 0x0a, 0x02});
    CHECK(aml::package({}) == Bytes{0x12, 0x02, 0x00});
    CHECK(aml::buffer({1, 2, 3}) == Bytes{0x11, 0x06, 0x0a, 0x03, 1, 2, 3});
    CHECK_THROWS_AS(aml::package(std::vector<Bytes>(256, aml::integer(0))), std::length_error);
}

TEST_CASE("Scope and Device wrap a term list behind a PkgLength") {
    CHECK(aml::scope("\\_SB", {}) == join({{0x10, 0x06, '\\'}, seg("_SB_")}));
    CHECK(aml::device("PCI0", aml::name("_UID", aml::integer(0))) ==
          join({{0x5b, 0x82, 0x0b}, seg("PCI0"), {0x08}, seg("_UID"), {0x00}}));
}

TEST_CASE("nested terms past 63 bytes decode back to what was built") {
    std::vector<Bytes> rows;
    for (uint32_t i = 0; i < 40; ++i) rows.push_back(aml::package({aml::integer(i << 16 | 0xffff), aml::integer(i)}));
    Bytes big_buffer(5000, 0xab);
    const Bytes device_body = join({aml::name("_PRT", aml::package(rows)), aml::name("_CRS", aml::buffer(big_buffer))});
    const Bytes aml = aml::scope("\\_SB", aml::device("DEV0", device_body));

    const auto terms = aml_reader::parse(aml);
    REQUIRE(terms.size() == 1);
    CHECK(terms[0].name == "\\_SB_");
    REQUIRE(terms[0].children.size() == 1);
    const aml_reader::Node& device = terms[0].children[0];
    CHECK(device.kind == aml_reader::Node::Kind::kDevice);
    CHECK(device.name == "DEV0");
    const aml_reader::Node* prt = aml_reader::find(device.children, "_PRT");
    REQUIRE(prt);
    REQUIRE(prt->children.at(0).children.size() == 40);
    CHECK(prt->children[0].children[39].children.at(0).value == (39U << 16 | 0xffff));
    const aml_reader::Node* crs = aml_reader::find(device.children, "_CRS");
    REQUIRE(crs);
    CHECK(crs->children.at(0).bytes == big_buffer);
}

TEST_CASE("strings are StringPrefix, ASCII and a NUL") {
    CHECK(aml::string("QEMU0001") == aml::Bytes{0x0d, 'Q', 'E', 'M', 'U', '0', '0', '0', '1', 0x00});
    CHECK(aml::string("") == aml::Bytes{0x0d, 0x00});
    CHECK_THROWS_AS(aml::string(std::string_view("a\0b", 3)), std::invalid_argument);
    CHECK_THROWS_AS(aml::string("\xc3\xa9"), std::invalid_argument);
}
