#pragma once
// A file in /tmp holding given bytes, deleted when the object goes away.

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

class TempFile {
public:
    explicit TempFile(const std::vector<uint8_t>& bytes) {
        char name[] = "/tmp/minikvm-test-XXXXXX";
        int fd = ::mkstemp(name);
        path_ = name;
        size_t done = 0;
        while (done < bytes.size()) {
            ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
            if (n <= 0) break;
            done += static_cast<size_t>(n);
        }
        ::close(fd);
    }
    ~TempFile() { ::unlink(path_.c_str()); }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};
