#pragma once
// A 16550A-compatible UART (8 registers at COM1 0x3f8, IRQ 4). Transmission
// is instantaneous, so the transmitter always looks idle (LSR 0x60); received
// bytes wait in a buffer until the guest reads them. TX and RX interrupts
// follow the 16550 rules Linux's 8250 driver probes for.

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "devices/irq_line.h"
#include "vmm/core/bus.h"
#include "vmm/backends/console_input.h"

namespace minikvm {

class Serial8250 : public BusDevice, public ConsoleInputSink {
public:
    static constexpr uint16_t kCom1Port = 0x3f8;
    static constexpr uint32_t kCom1Irq = 4;
    static constexpr uint64_t kRegisterCount = 8;
    static constexpr size_t kReceiveBufferSize = 4096;

    using Output = std::function<void(uint8_t)>;
    Serial8250(IrqLine& irq, Output output) : irq_(irq), output_(std::move(output)) {}

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    // Host input: queues as many bytes as fit and returns how many it took.
    size_t receive(std::span<const uint8_t> bytes) override;

private:
    uint8_t read_register(uint64_t offset);
    void write_register(uint64_t offset, uint8_t value);
    uint8_t interrupt_identification() const;
    uint8_t line_status() const;
    uint8_t modem_status() const;
    void update_irq();

    IrqLine& irq_;
    Output output_;

    std::mutex mutex_;
    std::deque<uint8_t> receive_buffer_;
    bool overrun_ = false;
    bool transmit_interrupt_pending_ = false;
    bool irq_asserted_ = false;
    uint8_t interrupt_enable_ = 0;
    uint8_t line_control_ = 0x03;  // 8N1
    uint8_t modem_control_ = 0;
    uint8_t scratch_ = 0;
    uint8_t fifo_control_ = 0;
    uint16_t divisor_ = 12;  // 9600 baud
};

}  // namespace minikvm
