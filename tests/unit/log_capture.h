#pragma once
// Sends spdlog's default logger into a buffer for the scope, so a test can
// check what a device logged (and the test output stays clean).

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <vector>

namespace test_helpers {

class LogCapture {
public:
    explicit LogCapture(spdlog::level::level_enum level = spdlog::level::info) : previous_(spdlog::default_logger()) {
        auto logger = std::make_shared<spdlog::logger>("test", sink_);
        logger->set_level(level);
        spdlog::set_default_logger(logger);
    }
    ~LogCapture() { spdlog::set_default_logger(previous_); }
    LogCapture(const LogCapture&) = delete;
    LogCapture& operator=(const LogCapture&) = delete;

    // Formatted lines, oldest first ("[warn] message").
    std::vector<std::string> lines() const { return sink_->last_formatted(); }
    // Lines at `level` ("warning", "error"...) that contain `text`.
    size_t count(const std::string& level, const std::string& text) const {
        size_t n = 0;
        for (const std::string& line : lines())
            if (line.find("[" + level + "]") != std::string::npos && line.find(text) != std::string::npos) ++n;
        return n;
    }

private:
    std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_ = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
    std::shared_ptr<spdlog::logger> previous_;
};

}  // namespace test_helpers
