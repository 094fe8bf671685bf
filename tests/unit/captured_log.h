#pragma once
// Collects what spdlog's default logger logs while it lives, every level
// included, instead of printing it; the previous default logger comes back
// when it goes. Lines are formatted with spdlog's default pattern, so they
// hold "[warning]", "[info]"... Thread-safe, like the sink behind it.

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

namespace test_helpers {

class CapturedLog {
public:
    // Keeps the last `capacity` lines.
    explicit CapturedLog(size_t capacity = 1024)
        : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(capacity)), saved_(spdlog::default_logger()) {
        auto logger = std::make_shared<spdlog::logger>("test", sink_);
        logger->set_level(spdlog::level::trace);
        spdlog::set_default_logger(logger);
    }
    ~CapturedLog() { spdlog::set_default_logger(saved_); }
    CapturedLog(const CapturedLog&) = delete;
    CapturedLog& operator=(const CapturedLog&) = delete;

    // Oldest first, without their line ends.
    std::vector<std::string> lines() const {
        std::vector<std::string> lines = sink_->last_formatted();
        for (std::string& line : lines)
            while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
        return lines;
    }

    // Lines containing `text`, and of those, the ones logged at `level`
    // ("warning", "info"...).
    std::vector<std::string> matching(const std::string& text) const {
        std::vector<std::string> found;
        for (std::string& line : lines())
            if (line.find(text) != std::string::npos) found.push_back(std::move(line));
        return found;
    }
    size_t count(const std::string& text) const { return matching(text).size(); }
    size_t count(const std::string& level, const std::string& text) const {
        size_t n = 0;
        for (const std::string& line : matching(text))
            if (line.find("[" + level + "]") != std::string::npos) ++n;
        return n;
    }
    std::vector<std::string> at_level(const std::string& level) const { return matching("[" + level + "]"); }

private:
    std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
    std::shared_ptr<spdlog::logger> saved_;
};

}  // namespace test_helpers
