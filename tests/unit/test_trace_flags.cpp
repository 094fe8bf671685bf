// `--trace LIST`: which names turn on which trace, and what is rejected.

#include <catch2/catch.hpp>

#include "vmm/core/trace_flags.h"

using namespace minikvm;

TEST_CASE("trace list: names, combinations and 'all'", "[trace]") {
    CHECK(TraceFlags{} == TraceFlags{.virtio = false, .pci = false});  // everything off by default
    CHECK(parse_trace_list("virtio") == TraceFlags{.virtio = true, .pci = false});
    CHECK(parse_trace_list("pci") == TraceFlags{.virtio = false, .pci = true});
    CHECK(parse_trace_list("virtio,pci") == TraceFlags{.virtio = true, .pci = true});
    CHECK(parse_trace_list("pci,virtio") == TraceFlags{.virtio = true, .pci = true});
    CHECK(parse_trace_list("all") == TraceFlags{.virtio = true, .pci = true, .vfio = true});
    CHECK(parse_trace_list("vfio") == TraceFlags{.virtio = false, .pci = false, .vfio = true});
    CHECK(parse_trace_list("vfio,pci").value().any());
    CHECK_FALSE(TraceFlags{}.any());
    CHECK(parse_trace_list("pci,pci") == TraceFlags{.virtio = false, .pci = true});
    CHECK(parse_trace_list(" virtio , pci ") == TraceFlags{.virtio = true, .pci = true});
}

TEST_CASE("trace list: empty items and unknown names are errors", "[trace]") {
    for (const char* bad : {"", " ", ",", "virtio,", ",pci", "virtio,,pci", "usb", "Virtio", "virtio,usb", "none",
                            "virtio pci"}) {
        INFO("list '" << bad << "'");
        CHECK_FALSE(parse_trace_list(bad));
    }
}
