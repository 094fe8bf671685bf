#include "devices/serial_8250.h"

#include <chrono>

namespace minikvm {

namespace {

// Register offsets (DLAB selects the divisor latch at 0 and 1).
enum : uint64_t { kData = 0, kInterruptEnable = 1, kInterruptId = 2, kLineControl = 3, kModemControl = 4,
                  kLineStatus = 5, kModemStatus = 6, kScratch = 7 };

constexpr uint8_t kIerReceivedData = 0x01;
constexpr uint8_t kIerTransmitEmpty = 0x02;
constexpr uint8_t kIerLineStatus = 0x04;

constexpr uint8_t kIirNoInterrupt = 0x01;
constexpr uint8_t kIirLineStatus = 0x06;
constexpr uint8_t kIirReceivedData = 0x04;
constexpr uint8_t kIirTransmitEmpty = 0x02;
constexpr uint8_t kIirFifosEnabled = 0xc0;

constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearReceive = 0x02;

constexpr uint8_t kLcrDivisorLatch = 0x80;

constexpr uint8_t kMcrDtr = 0x01;
constexpr uint8_t kMcrRts = 0x02;
constexpr uint8_t kMcrOut1 = 0x04;
constexpr uint8_t kMcrOut2 = 0x08;
constexpr uint8_t kMcrLoopback = 0x10;

constexpr uint8_t kLsrDataReady = 0x01;
constexpr uint8_t kLsrOverrun = 0x02;
constexpr uint8_t kLsrTransmitEmpty = 0x20;  // THR empty
constexpr uint8_t kLsrTransmitterIdle = 0x40;  // THR and shift register empty

constexpr uint8_t kMsrCts = 0x10;
constexpr uint8_t kMsrDsr = 0x20;
constexpr uint8_t kMsrRi = 0x40;
constexpr uint8_t kMsrDcd = 0x80;

}  // namespace

void Serial8250::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mutex_);
    // Wider accesses see consecutive registers, like the byte-wide hardware.
    for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < kRegisterCount ? read_register(offset + i) : 0xff;
    update_irq();
}

void Serial8250::write(uint64_t offset, std::span<const uint8_t> data) {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < data.size(); ++i)
        if (offset + i < kRegisterCount) write_register(offset + i, data[i]);
    update_irq();
}

uint8_t Serial8250::read_register(uint64_t offset) {
    const bool divisor_latch = line_control_ & kLcrDivisorLatch;
    switch (offset) {
    case kData: {
        if (divisor_latch) return static_cast<uint8_t>(divisor_);
        if (receive_buffer_.empty()) return 0;
        uint8_t byte = receive_buffer_.front();
        receive_buffer_.pop_front();
        return byte;
    }
    case kInterruptEnable:
        return divisor_latch ? static_cast<uint8_t>(divisor_ >> 8) : interrupt_enable_;
    case kInterruptId: {
        uint8_t id = interrupt_identification();
        // Reading IIR acknowledges a transmit-empty interrupt.
        if ((id & 0x0f) == kIirTransmitEmpty) transmit_interrupt_pending_ = false;
        return id | ((fifo_control_ & kFcrEnable) ? kIirFifosEnabled : 0);
    }
    case kLineControl:
        return line_control_;
    case kModemControl:
        return modem_control_;
    case kLineStatus: {
        uint8_t status = line_status();
        overrun_ = false;  // error bits clear on read
        return status;
    }
    case kModemStatus:
        return modem_status();
    case kScratch:
        return scratch_;
    }
    return 0xff;
}

void Serial8250::write_register(uint64_t offset, uint8_t value) {
    const bool divisor_latch = line_control_ & kLcrDivisorLatch;
    switch (offset) {
    case kData:
        if (divisor_latch) {
            divisor_ = static_cast<uint16_t>((divisor_ & 0xff00) | value);
            return;
        }
        if (modem_control_ & kMcrLoopback) {
            // Loopback: the byte comes straight back to our own receiver.
            if (receive_buffer_.size() < kReceiveBufferSize) receive_buffer_.push_back(value);
            else overrun_ = true;
        } else {
            output_(value);
        }
        // The byte is "sent" at once, so THR is empty again right away.
        transmit_interrupt_pending_ = (interrupt_enable_ & kIerTransmitEmpty) != 0;
        return;
    case kInterruptEnable:
        if (divisor_latch) {
            divisor_ = static_cast<uint16_t>((divisor_ & 0x00ff) | (value << 8));
            return;
        }
        // A 16550 raises THRE as soon as the interrupt is enabled while the
        // transmitter is empty; Linux tests for exactly this (UART_BUG_THRE).
        if (!(interrupt_enable_ & kIerTransmitEmpty) && (value & kIerTransmitEmpty)) transmit_interrupt_pending_ = true;
        if (!(value & kIerTransmitEmpty)) transmit_interrupt_pending_ = false;
        interrupt_enable_ = value & 0x0f;
        return;
    case kInterruptId:  // FCR on write
        if (value & kFcrClearReceive) receive_buffer_.clear();
        fifo_control_ = value & kFcrEnable;
        return;
    case kLineControl:
        line_control_ = value;
        return;
    case kModemControl:
        modem_control_ = value & 0x1f;
        return;
    case kScratch:
        scratch_ = value;
        return;
    default:  // LSR and MSR are read-only
        return;
    }
}

uint8_t Serial8250::line_status() const {
    uint8_t status = kLsrTransmitEmpty | kLsrTransmitterIdle;
    if (!receive_buffer_.empty()) status |= kLsrDataReady;
    if (overrun_) status |= kLsrOverrun;
    return status;
}

uint8_t Serial8250::modem_status() const {
    if (modem_control_ & kMcrLoopback) {
        // Loopback wires the modem outputs back to the inputs.
        uint8_t status = 0;
        if (modem_control_ & kMcrRts) status |= kMsrCts;
        if (modem_control_ & kMcrDtr) status |= kMsrDsr;
        if (modem_control_ & kMcrOut1) status |= kMsrRi;
        if (modem_control_ & kMcrOut2) status |= kMsrDcd;
        return status;
    }
    return kMsrDcd | kMsrDsr | kMsrCts;  // a terminal is always attached
}

uint8_t Serial8250::interrupt_identification() const {
    // Highest priority first, as on the 16550.
    if ((interrupt_enable_ & kIerLineStatus) && overrun_) return kIirLineStatus;
    if ((interrupt_enable_ & kIerReceivedData) && !receive_buffer_.empty()) return kIirReceivedData;
    if ((interrupt_enable_ & kIerTransmitEmpty) && transmit_interrupt_pending_) return kIirTransmitEmpty;
    return kIirNoInterrupt;
}

void Serial8250::update_irq() {
    // Real PC cards gate the line with OUT2; like QEMU we do not, so simple
    // guests that never set OUT2 still get interrupts.
    bool asserted = interrupt_identification() != kIirNoInterrupt;
    if (asserted == irq_asserted_) return;
    irq_asserted_ = asserted;
    irq_.set_level(asserted);
}

size_t Serial8250::receive(std::span<const uint8_t> bytes) {
    std::lock_guard lock(mutex_);
    size_t accepted = 0;
    while (accepted < bytes.size() && receive_buffer_.size() < kReceiveBufferSize)
        receive_buffer_.push_back(bytes[accepted++]);
    update_irq();
    return accepted;
}

}  // namespace minikvm
