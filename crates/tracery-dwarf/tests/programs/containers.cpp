// C++ standard-library values for the differential test against gdb's libstdc++ printers
// (tests/differential_cpp.rs). `inspect` is the probed function: the test stops at the
// marked line and compares Tracery's values with what gdb prints there. `inspect_queues`
// holds the deques at its own marked line, in a plan of their own so that they do not
// take the data budget of `inspect`'s values.
#include <array>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

struct Point {
    int x;
    int y;
};

struct Values {
    std::string short_text;
    std::string empty_text;
    std::string long_text;
    std::string shrunk_text;
    std::vector<int> numbers;
    std::vector<std::string> words;
    std::array<int, 3> triple;
    std::map<std::string, std::vector<int>> groups;
    std::set<int> primes;
    std::multimap<int, std::string> tags;
    std::multiset<std::string> names;
    std::unordered_map<std::string, int> counts;
    std::unordered_set<int> seen;
    std::shared_ptr<Point> shared;
    std::shared_ptr<Point> shared_copy;
    std::weak_ptr<Point> weak;
    std::shared_ptr<int> shared_null;
    std::unique_ptr<Point> owned;
    std::optional<int> maybe;
    std::optional<std::string> nothing;
    std::variant<int, std::string, double> choice;
    std::variant<int, std::string, double> number_choice;
    std::map<int, int> big;
};

struct Queues {
    std::deque<int> queue;
    std::deque<std::string> lines;
    std::deque<int> empty_queue;
    std::deque<long> long_queue;
};

// noinline and a volatile sink: the breakpoint line is in this frame at -O2 as at -O0.
__attribute__((noinline)) int inspect(Values &v) {
    static volatile int sink;
    sink = static_cast<int>(v.numbers.size()); // @here
    return sink;
}

__attribute__((noinline)) int inspect_queues(Queues &q) {
    static volatile int sink;
    sink = static_cast<int>(q.queue.size()); // @queues
    return sink;
}

// Prints `ready` and waits for a line on stdin, so a test can plant its breakpoint first;
// `nowait` as the first argument skips that (gdb plants its own before `run`).
int main(int argc, char **argv) {
    if (argc < 2 || std::string(argv[1]) != "nowait") {
        std::printf("ready\n");
        std::fflush(stdout);
        char line[16];
        if (!std::fgets(line, sizeof line, stdin)) {
            return 1;
        }
    }
    Values v;
    v.short_text = "hello";
    v.long_text = "a string much longer than fifteen bytes, so it lives on the heap";
    v.shrunk_text.reserve(100);
    v.shrunk_text = "heap but short";
    v.numbers = {1, 2, 3, 5, 8};
    v.numbers.reserve(8);
    v.words = {"alpha", "a rather long word that does not fit in place"};
    v.triple = {7, 8, 9};
    v.groups["a"] = {1, 2};
    v.groups["b"] = {};
    v.groups["a key longer than the sso buffer"] = {3};
    v.primes = {2, 3, 5, 7, 11};
    v.tags = {{1, "one"}, {1, "uno"}, {2, "two"}};
    v.names = {"x", "y", "x"};
    v.counts = {{"apples", 3}, {"pears", 0}, {"a long key that is not a small string", 7}};
    v.seen = {4, 5, 6};
    v.shared = std::make_shared<Point>(Point{3, 4});
    v.shared_copy = v.shared;
    v.weak = v.shared;
    v.owned = std::make_unique<Point>(Point{5, 6});
    v.maybe = 42;
    v.choice = std::string("picked");
    v.number_choice = 2.5;
    for (int i = 0; i < 1000; i++) {
        v.big[i] = i * i;
    }
    Queues q;
    // push_front starts a node of its own: the first node holds one element.
    q.queue = {1, 2, 3, 4, 5};
    q.queue.push_front(0);
    q.lines = {"first", "a line longer than the small string buffer", "third"};
    q.lines.push_front("zeroth");
    // 300 longs over 5 nodes of 64, starting mid-node: more than any capture cap.
    for (long i = 0; i < 290; i++) {
        q.long_queue.push_back(i);
    }
    for (long i = 1; i <= 10; i++) {
        q.long_queue.push_front(-i);
    }
    std::string local = "local";
    std::vector<int> local_vec = {10, 20};
    int r = inspect(v) + inspect_queues(q);
    std::printf("%d %s %zu\n", r, local.c_str(), local_vec.size());
    return 0;
}
