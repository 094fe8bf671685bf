#include "devices/i8042.h"

#include <algorithm>

namespace minikvm {

namespace {
constexpr uint64_t kDataOffset = 0;
constexpr uint64_t kCommandOffset = 4;
constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystemFlag = 0x04;  // set after a successful self-test
constexpr uint8_t kStatusCommand = 0x08;     // last write was to the command port

constexpr uint8_t kReadCommandByte = 0x20;
constexpr uint8_t kWriteCommandByte = 0x60;
constexpr uint8_t kDisableAux = 0xa7;
constexpr uint8_t kEnableAux = 0xa8;
constexpr uint8_t kTestAux = 0xa9;
constexpr uint8_t kSelfTest = 0xaa;
constexpr uint8_t kTestKeyboard = 0xab;
constexpr uint8_t kDisableKeyboard = 0xad;
constexpr uint8_t kEnableKeyboard = 0xae;
constexpr uint8_t kWriteOutputPort = 0xd1;
// Loopback: the next data byte comes back as if the device had sent it.
// Linux's aux-port probe uses 0xd3; without an answer it spins 10000 reads.
constexpr uint8_t kWriteKeyboardOutput = 0xd2;
constexpr uint8_t kWriteAuxOutput = 0xd3;
constexpr uint8_t kPulseReset = 0xfe;
}  // namespace

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mutex_);
    uint8_t value = 0xff;  // the ports between data and command are not ours
    if (offset == kCommandOffset) {
        value = kStatusSystemFlag | kStatusCommand | (output_ ? kStatusOutputFull : 0);
    } else if (offset == kDataOffset) {
        value = output_.value_or(0);
        output_.reset();
    }
    std::fill(data.begin(), data.end(), value);
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty()) return;
    bool reset = false;
    {
        std::lock_guard lock(mutex_);
        uint8_t value = data[0];
        if (offset == kCommandOffset) {
            reset = value == kPulseReset;
            if (!reset) command(value);
        } else if (offset == kDataOffset && pending_write_) {
            if (*pending_write_ == kWriteCommandByte) command_byte_ = value;
            // Output port bit 0 low holds the CPU in reset.
            if (*pending_write_ == kWriteOutputPort && !(value & 0x01)) reset = true;
            if (*pending_write_ == kWriteKeyboardOutput || *pending_write_ == kWriteAuxOutput) output_ = value;
            pending_write_.reset();
        }
        // A byte to the data port without a pending command would go to the
        // keyboard; there is none, so it is dropped.
    }
    if (reset) on_reset_();
}

void I8042::command(uint8_t value) {
    switch (value) {
    case kReadCommandByte:
        output_ = command_byte_;
        break;
    case kWriteCommandByte:
    case kWriteOutputPort:
    case kWriteKeyboardOutput:
    case kWriteAuxOutput:
        pending_write_ = value;
        break;
    case kSelfTest:
        output_ = 0x55;  // passed
        break;
    case kTestAux:
    case kTestKeyboard:
        output_ = 0x00;  // interface OK
        break;
    case kDisableAux:
        command_byte_ |= 0x20;
        break;
    case kEnableAux:
        command_byte_ &= ~0x20;
        break;
    case kDisableKeyboard:
        command_byte_ |= 0x10;
        break;
    case kEnableKeyboard:
        command_byte_ &= ~0x10;
        break;
    default:
        break;  // other commands have no effect without devices behind them
    }
}

}  // namespace minikvm
