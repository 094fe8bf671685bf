#include "virtio/used_batch.h"

namespace minikvm {

void UsedBatch::publish(VirtQueue& queue, VirtioTransportSignals& signals) {
    if (elements_.empty()) return;
    // A refused batch (a device bug) is logged by the queue; the interrupt
    // question is still asked, for what earlier rounds published.
    queue.push_batch(elements_);
    elements_.clear();
    if (queue.needs_interrupt()) signals.signal_used_buffer(queue);
}

}  // namespace minikvm
