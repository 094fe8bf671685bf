#include "vmm/backends/gdb/gdb_command.h"

#include <optional>
#include <utility>

#include "vmm/backends/gdb/gdb_hex.h"

namespace minikvm::gdb {

namespace {

using namespace cmd;

Command malformed() { return Invalid{kErrorInvalid}; }
Command out_of_range() { return Invalid{kErrorTooBig}; }

// `text` cut at the first `separator`, or nullopt if it has none.
std::optional<std::pair<std::string_view, std::string_view>> split(std::string_view text, char separator) {
    size_t at = text.find(separator);
    if (at == std::string_view::npos) return std::nullopt;
    return std::pair(text.substr(0, at), text.substr(at + 1));
}

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }

std::optional<ThreadSelector> parse_thread(std::string_view text) {
    if (text == "-1") return ThreadSelector{ThreadSelector::Kind::All, 0};
    auto value = parse_hex_number(text);
    if (!value || *value > UINT32_MAX) return std::nullopt;
    if (*value == 0) return ThreadSelector{ThreadSelector::Kind::Any, 0};
    return ThreadSelector{ThreadSelector::Kind::One, static_cast<ThreadId>(*value)};
}

// "addr,length" with length within one transfer and the range inside 64 bits.
std::optional<std::pair<uint64_t, uint64_t>> parse_range(std::string_view text, bool& too_big) {
    auto fields = split(text, ',');
    if (!fields) return std::nullopt;
    auto address = parse_hex_number(fields->first);
    auto length = parse_hex_number(fields->second);
    if (!address || !length) return std::nullopt;
    if (*length > kMaxMemoryTransfer || (*length != 0 && *address > UINT64_MAX - (*length - 1))) {
        too_big = true;
        return std::nullopt;
    }
    return std::pair(*address, *length);
}

Command parse_memory_read(std::string_view args) {
    bool past_limit = false;
    auto range = parse_range(args, past_limit);
    if (!range) return past_limit ? out_of_range() : malformed();
    return ReadMemory{range->first, range->second};
}

// M addr,len:hex and X addr,len:binary: the data must be exactly `len` bytes.
Command parse_memory_write(std::string_view args, bool binary) {
    auto parts = split(args, ':');
    if (!parts) return malformed();
    bool past_limit = false;
    auto range = parse_range(parts->first, past_limit);
    if (!range) return past_limit ? out_of_range() : malformed();
    std::vector<uint8_t> data;
    if (binary) {
        data.assign(parts->second.begin(), parts->second.end());
    } else {
        auto decoded = decode_hex_bytes(parts->second);
        if (!decoded) return malformed();
        data = std::move(*decoded);
    }
    if (data.size() != range->second) return malformed();
    return WriteMemory{range->first, std::move(data)};
}

// c [addr], s [addr], C sig[;addr], S sig[;addr].
Command parse_resume(ResumeKind kind, bool with_signal, std::string_view args) {
    if (with_signal) {
        auto fields = split(args, ';');
        std::string_view signal = fields ? fields->first : args;
        auto number = parse_hex_number(signal);
        if (!number || *number > 0xff) return malformed();
        args = fields ? fields->second : std::string_view();
        if (fields && args.empty()) return malformed();
    }
    if (args.empty()) return Resume{kind, false, 0};
    auto address = parse_hex_number(args);
    if (!address) return malformed();
    return Resume{kind, true, *address};
}

// vCont;action[:thread]... with actions c, C sig, s, S sig.
Command parse_vcont(std::string_view args) {
    VCont command;
    if (args.empty()) return malformed();
    while (!args.empty()) {
        if (args.front() != ';') return malformed();
        args.remove_prefix(1);
        auto next = args.find(';');
        std::string_view action = args.substr(0, next);
        args = next == std::string_view::npos ? std::string_view() : args.substr(next);

        auto with_thread = split(action, ':');
        std::string_view verb = with_thread ? with_thread->first : action;
        ThreadSelector thread{ThreadSelector::Kind::All, 0};
        if (with_thread) {
            auto parsed = parse_thread(with_thread->second);
            if (!parsed) return malformed();
            thread = *parsed;
        }
        if (verb.empty()) return malformed();
        ResumeKind kind;
        if (verb.front() == 'c' || verb.front() == 'C') kind = ResumeKind::Continue;
        else if (verb.front() == 's' || verb.front() == 'S') kind = ResumeKind::Step;
        else return malformed();  // t, r: never advertised
        bool with_signal = verb.front() == 'C' || verb.front() == 'S';
        if (with_signal) {
            auto signal = parse_hex_number(verb.substr(1));
            if (!signal || *signal > 0xff) return malformed();
        } else if (verb.size() != 1) {
            return malformed();
        }
        command.actions.push_back({kind, thread});
    }
    return command;
}

Command parse_breakpoint(bool insert, std::string_view args) {
    auto fields = split(args, ',');
    if (!fields) return malformed();
    auto type = parse_hex_number(fields->first);
    if (!type) return malformed();
    if (*type > 4) return Unknown{};  // "an empty reply for an unrecognized type"
    auto rest = split(fields->second, ',');
    if (!rest) return malformed();
    auto address = parse_hex_number(rest->first);
    auto kind = parse_hex_number(rest->second);  // conditions (`;X...`) were never offered
    if (!address || !kind) return malformed();
    return Breakpoint{insert, static_cast<BreakpointType>(*type), *address, *kind};
}

Command parse_select_thread(std::string_view args) {
    if (args.empty()) return malformed();
    char operation = args.front();
    if (operation != 'g' && operation != 'c') return Unknown{};
    auto thread = parse_thread(args.substr(1));
    if (!thread) return malformed();
    return SelectThread{operation, *thread};
}

Command parse_supported(std::string_view args) {
    Supported supported{false, false};
    while (!args.empty()) {
        auto next = args.find(';');
        std::string_view feature = args.substr(0, next);
        args = next == std::string_view::npos ? std::string_view() : args.substr(next + 1);
        if (feature == "swbreak+") supported.swbreak = true;
        if (feature == "hwbreak+") supported.hwbreak = true;
    }
    return supported;
}

// qXfer:features:read:ANNEX:OFFSET,LENGTH
Command parse_read_features(std::string_view args) {
    auto annex = split(args, ':');
    if (!annex) return malformed();
    auto fields = split(annex->second, ',');
    if (!fields) return malformed();
    auto offset = parse_hex_number(fields->first);
    auto length = parse_hex_number(fields->second);
    if (!offset || !length) return malformed();
    return ReadFeatures{std::string(annex->first), *offset, *length};
}

Command parse_query(std::string_view payload) {
    if (payload == "qfThreadInfo") return ThreadInfoFirst{};
    if (payload == "qsThreadInfo") return ThreadInfoNext{};
    if (payload == "qC") return CurrentThread{};
    if (payload == "qAttached" || starts_with(payload, "qAttached:")) return Attached{};
    if (payload == "qSupported") return Supported{false, false};
    if (starts_with(payload, "qSupported:")) return parse_supported(payload.substr(11));
    if (starts_with(payload, "qXfer:features:read:")) return parse_read_features(payload.substr(20));
    if (starts_with(payload, "qThreadExtraInfo,")) {
        auto thread = parse_thread(payload.substr(17));
        if (!thread) return malformed();
        return ThreadExtraInfo{*thread};
    }
    return Unknown{};
}

Command parse_v(std::string_view payload) {
    if (payload == "vCont?") return VContQuery{};
    if (starts_with(payload, "vCont;")) return parse_vcont(payload.substr(5));
    if (starts_with(payload, "vKill;")) return Kill{true};
    return Unknown{};
}

template <typename T>
Command exactly(std::string_view payload, std::string_view expected) {
    return payload == expected ? Command(T{}) : malformed();
}

}  // namespace

Command parse_command(std::string_view payload) {
    if (payload.empty()) return Unknown{};
    std::string_view args = payload.substr(1);
    switch (payload.front()) {
        case '?': return exactly<HaltReason>(payload, "?");
        case 'g': return exactly<ReadRegisters>(payload, "g");
        case 'G': {
            auto image = decode_hex_bytes(args);
            if (!image || image->empty()) return malformed();
            return WriteRegisters{std::move(*image)};
        }
        case 'p': {
            auto number = parse_hex_number(args);
            if (!number) return malformed();
            return ReadRegister{*number};
        }
        case 'P': {
            auto fields = split(args, '=');
            if (!fields) return malformed();
            auto number = parse_hex_number(fields->first);
            auto value = decode_hex_bytes(fields->second);
            if (!number || !value || value->empty()) return malformed();
            return WriteRegister{*number, std::move(*value)};
        }
        case 'm': return parse_memory_read(args);
        case 'M': return parse_memory_write(args, false);
        case 'X': return parse_memory_write(args, true);
        case 'c': return parse_resume(ResumeKind::Continue, false, args);
        case 's': return parse_resume(ResumeKind::Step, false, args);
        case 'C': return parse_resume(ResumeKind::Continue, true, args);
        case 'S': return parse_resume(ResumeKind::Step, true, args);
        case 'v': return parse_v(payload);
        case 'Z': return parse_breakpoint(true, args);
        case 'z': return parse_breakpoint(false, args);
        case 'H': return parse_select_thread(args);
        case 'T': {
            auto thread = parse_thread(args);
            if (!thread) return malformed();
            return ThreadAlive{*thread};
        }
        case 'q': return parse_query(payload);
        case 'Q': return payload == "QStartNoAckMode" ? Command(StartNoAckMode{}) : Command(Unknown{});
        case 'D':
            if (args.empty() || args.front() == ';') return Detach{};
            return malformed();
        case 'k': return Kill{false};
        default: return Unknown{};
    }
}

}  // namespace minikvm::gdb
