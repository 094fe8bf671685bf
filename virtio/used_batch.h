#pragma once
// How every device gives chains back: collect the used elements of one
// round of work (a kick, a batch of I/O completions, a burst of input),
// then publish them with one used-index update (one release fence) and ask
// once whether the driver wants an interrupt. One interrupt per round, not
// per chain, and the driver sees the whole round or none of it.

#include <cstdint>
#include <vector>

#include "virtio/virtio_device.h"
#include "virtio/virtqueue.h"

namespace minikvm {

class UsedBatch {
public:
    // `head` was popped from the queue this batch is published to;
    // `written` bytes of its device-writable buffers hold data.
    void add(uint16_t head, uint32_t written) { elements_.push_back({head, written}); }
    bool empty() const { return elements_.empty(); }
    size_t size() const { return elements_.size(); }

    // Pushes everything collected onto `queue`, then raises the used-buffer
    // interrupt through `signals` if the queue says the driver wants one.
    // Nothing collected: nothing happens. Empties the batch either way.
    void publish(VirtQueue& queue, VirtioTransportSignals& signals);
    // Forgets what was collected (device reset: the driver expects nothing).
    void clear() { elements_.clear(); }

private:
    std::vector<VirtQueue::UsedElement> elements_;
};

}  // namespace minikvm
