#pragma once
// One --share option, as parsed (vmm/app/cli) and before anything is opened
// (p9::SharedTree opens it, Virtio9p serves it).

#include <string>

namespace minikvm {

struct ShareConfig {
    std::string path;            // the host directory
    std::string tag;             // what the guest mounts: mount -t 9p -o trans=virtio TAG DIR
    bool read_only = false;
    bool allow_devices = false;  // open device nodes, FIFOs and sockets (never make device nodes)
};

}  // namespace minikvm
