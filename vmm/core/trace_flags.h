#pragma once
// Which debug traces are on, as `--trace LIST` asks. A plain value: the
// machine hands each flag to the components it concerns (set_trace()), so
// there is no global switch and no cost beyond a branch while a trace is off.
//
//   virtio  every register access of each virtio-pci transport, its status
//           changes, kicks and interrupts, and every chain its queues pop
//           and push
//   pci     every configuration access through 0xcf8/0xcfc, and BAR
//           (un)mapping
//   vfio    every configuration access of an assigned device (emulated or
//           passed through), its BAR mappings and interrupt mode changes
//   all     all of them
//
// Trace lines are logged at info level and start with "trace <who> ", so
// `grep 'trace virtio-console0'` picks one device out.

#include <optional>
#include <string_view>

namespace minikvm {

struct TraceFlags {
    bool virtio = false;
    bool pci = false;
    bool vfio = false;

    bool any() const { return virtio || pci || vfio; }

    bool operator==(const TraceFlags&) const = default;
};

// The names parse_trace_list() accepts, for help and error messages.
inline constexpr std::string_view kTraceNames = "virtio, pci, vfio, all";

// A comma-separated list of names, in any order, repeats allowed ("pci",
// "virtio,pci", "all"); blanks around a name are ignored. nullopt for an
// empty list, an empty item or an unknown name.
std::optional<TraceFlags> parse_trace_list(std::string_view list);

}  // namespace minikvm
