// A small event-driven HTTP/1.1 endpoint for the HTTP benchmark (bench/run.sh --http): one thread, epoll,
// keep-alive, no per-request logging, so that on a 2-core machine the endpoint leaves the CPU to the database.
// It implements the subset of test/http/server.js the benchmark uses, with the same statistics:
//   /ok                 200 {"ok":true}
//   /delay?ms=N         200 {"delayed":N} after N ms
//   GET /stats          {"requests","by_path","keys","duplicates","no_key","in_flight","max_in_flight",
//                        "connections","max_connections"} (not counted)
//   GET /keys           {"<Idempotency-Key>": count, ...} (not counted)
//   POST /reset         zero the statistics (not counted)
// Usage: endpoint [--port N]  (0: any free port) -- prints "PORT <n>" on stdout once listening.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Conn {
    int fd;
    uint64_t gen;
    std::string in, out;
    bool waiting = false;  // a delayed answer is due: do not parse the next request yet
};

struct Due {
    Clock::time_point at;
    int fd;
    uint64_t gen;
    long ms;
    bool operator>(const Due &o) const { return at > o.at; }
};

int ep;
std::unordered_map<int, Conn> conns;
std::priority_queue<Due, std::vector<Due>, std::greater<Due>> timers;
uint64_t next_gen = 1;
long requests = 0, duplicates = 0, no_key = 0, in_flight = 0, max_in_flight = 0, max_conns = 0;
std::map<std::string, long> by_path;
std::unordered_map<std::string, int> keys;

void reset() {
    requests = duplicates = no_key = 0;
    max_in_flight = in_flight;
    max_conns = static_cast<long>(conns.size());
    by_path.clear();
    keys.clear();
}

void close_conn(int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    conns.erase(fd);
}

void flush(Conn &c) {
    while (!c.out.empty()) {
        ssize_t n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n > 0) {
            c.out.erase(0, static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        close_conn(c.fd);
        return;
    }
    epoll_event ev{};
    ev.data.fd = c.fd;
    ev.events = EPOLLIN | (c.out.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT));
    epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
}

void respond(Conn &c, int status, const std::string &body) {
    char head[160];
    snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
             status, status == 200 ? "OK" : "Not Found", body.size());
    c.out += head;
    c.out += body;
}

std::string json_escape(const std::string &s) {
    std::string o;
    for (char ch : s) {
        if (ch == '"' || ch == '\\') o += '\\';
        if (static_cast<unsigned char>(ch) >= 0x20) o += ch;
    }
    return o;
}

std::string stats_json() {
    std::string s = "{\"requests\":" + std::to_string(requests) + ",\"by_path\":{";
    bool first = true;
    for (auto &kv : by_path) {
        s += (first ? "\"" : ",\"") + json_escape(kv.first) + "\":" + std::to_string(kv.second);
        first = false;
    }
    s += "},\"keys\":" + std::to_string(keys.size()) + ",\"duplicates\":" + std::to_string(duplicates) +
         ",\"no_key\":" + std::to_string(no_key) + ",\"in_flight\":" + std::to_string(in_flight) +
         ",\"max_in_flight\":" + std::to_string(max_in_flight) + ",\"connections\":" + std::to_string(conns.size()) +
         ",\"max_connections\":" + std::to_string(max_conns) + "}";
    return s;
}

// Handles complete requests in c.in; returns false if the connection was closed.
void process(Conn &c) {
    while (!c.waiting) {
        size_t end = c.in.find("\r\n\r\n");
        if (end == std::string::npos) return;
        size_t line_end = c.in.find("\r\n");
        std::string line = c.in.substr(0, line_end);
        size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
        std::string method = line.substr(0, sp1);
        std::string target = sp1 != std::string::npos && sp2 > sp1 ? line.substr(sp1 + 1, sp2 - sp1 - 1) : "/";
        size_t clen = 0;
        std::string key;
        size_t pos = line_end + 2;
        while (pos < end) {
            size_t e = c.in.find("\r\n", pos);
            std::string h = c.in.substr(pos, e - pos);
            size_t colon = h.find(':');
            if (colon != std::string::npos) {
                std::string name = h.substr(0, colon);
                for (auto &ch : name) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
                size_t v = colon + 1;
                while (v < h.size() && h[v] == ' ') v++;
                if (name == "content-length") clen = strtoul(h.c_str() + v, nullptr, 10);
                else if (name == "idempotency-key") key = h.substr(v);
            }
            pos = e + 2;
        }
        if (c.in.size() < end + 4 + clen) return;  // body not complete yet
        c.in.erase(0, end + 4 + clen);

        std::string path = target.substr(0, target.find('?'));
        if (path == "/stats") {
            respond(c, 200, stats_json());
            continue;
        }
        if (path == "/keys") {
            std::string s = "{";
            bool first = true;
            for (auto &kv : keys) {
                s += (first ? "\"" : ",\"") + json_escape(kv.first) + "\":" + std::to_string(kv.second);
                first = false;
            }
            respond(c, 200, s + "}");
            continue;
        }
        if (path == "/reset") {
            reset();
            respond(c, 200, "{\"reset\":true}");
            continue;
        }
        requests++;
        by_path[path]++;
        if (key.empty()) no_key++;
        else if (keys[key]++ > 0) duplicates++;
        if (++in_flight > max_in_flight) max_in_flight = in_flight;
        if (path == "/delay") {
            size_t q = target.find("ms=");
            long ms = q == std::string::npos ? 0 : strtol(target.c_str() + q + 3, nullptr, 10);
            timers.push(Due{Clock::now() + std::chrono::milliseconds(ms), c.fd, c.gen, ms});
            c.waiting = true;
            return;
        }
        in_flight--;
        if (path == "/ok") respond(c, 200, "{\"ok\":true}");
        else respond(c, 404, "{\"error\":\"not found\"}");
    }
}

}  // namespace

int main(int argc, char **argv) {
    int port = 0;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0 || listen(ls, 65535) != 0) {
        perror("endpoint: bind/listen");
        return 1;
    }
    socklen_t alen = sizeof(a);
    getsockname(ls, reinterpret_cast<sockaddr *>(&a), &alen);
    printf("PORT %d\n", ntohs(a.sin_port));
    fflush(stdout);
    ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = ls;
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    std::vector<epoll_event> events(1024);
    char buf[65536];
    for (;;) {
        int timeout = -1;
        if (!timers.empty()) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(timers.top().at - Clock::now()).count();
            timeout = left < 0 ? 0 : static_cast<int>(left) + 1;
        }
        int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), timeout);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == ls) {
                for (;;) {
                    int cfd = accept4(ls, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0) break;
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    Conn &c = conns[cfd];
                    c.fd = cfd;
                    c.gen = next_gen++;
                    if (static_cast<long>(conns.size()) > max_conns) max_conns = static_cast<long>(conns.size());
                    epoll_event cev{};
                    cev.events = EPOLLIN;
                    cev.data.fd = cfd;
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                }
                continue;
            }
            auto it = conns.find(fd);
            if (it == conns.end()) continue;
            Conn &c = it->second;
            if (events[i].events & EPOLLIN) {
                bool closed = false;
                for (;;) {
                    ssize_t r = recv(fd, buf, sizeof(buf), 0);
                    if (r > 0) {
                        c.in.append(buf, static_cast<size_t>(r));
                        continue;
                    }
                    if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) closed = true;
                    break;
                }
                if (closed) {
                    if (c.waiting) in_flight--;
                    close_conn(fd);
                    continue;
                }
                process(c);
            }
            if (conns.count(fd)) flush(conns[fd]);
        }
        auto now = Clock::now();
        while (!timers.empty() && timers.top().at <= now) {
            Due d = timers.top();
            timers.pop();
            auto it = conns.find(d.fd);
            if (it == conns.end() || it->second.gen != d.gen) continue;  // the client went away
            Conn &c = it->second;
            in_flight--;
            c.waiting = false;
            respond(c, 200, "{\"delayed\":" + std::to_string(d.ms) + "}");
            process(c);
            if (conns.count(d.fd)) flush(conns[d.fd]);
        }
    }
}
