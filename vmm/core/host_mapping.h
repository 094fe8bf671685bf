#pragma once
// Owning wrapper for an mmap()ed host region: unmaps it exactly once.

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <utility>

namespace minikvm {

class HostMapping {
public:
    HostMapping() = default;
    HostMapping(void* address, size_t length) : address_(address), length_(length) {}
    ~HostMapping() { reset(); }

    HostMapping(HostMapping&& other) noexcept
        : address_(std::exchange(other.address_, nullptr)), length_(std::exchange(other.length_, 0)) {}
    HostMapping& operator=(HostMapping&& other) noexcept {
        if (this != &other) {
            reset();
            address_ = std::exchange(other.address_, nullptr);
            length_ = std::exchange(other.length_, 0);
        }
        return *this;
    }
    HostMapping(const HostMapping&) = delete;
    HostMapping& operator=(const HostMapping&) = delete;

    // Anonymous private memory for guest RAM; MAP_NORESERVE so a large guest
    // costs only what it touches, 2 MiB-aligned and advised for huge pages.
    static HostMapping anonymous(size_t length);
    // Shared mapping of `fd` (used for the vCPU's kvm_run area).
    static HostMapping shared(int fd, size_t length);

    uint8_t* data() const { return static_cast<uint8_t*>(address_); }
    size_t size() const { return length_; }

    void reset() {
        if (address_ != nullptr) ::munmap(address_, length_);
        address_ = nullptr;
        length_ = 0;
    }

private:
    static constexpr size_t kHugePage = size_t{2} << 20;

    void* address_ = nullptr;
    size_t length_ = 0;
};

}  // namespace minikvm
