#include "json.hpp"

#include <cerrno>
#include <cstdlib>

namespace pw::json {

bool Value::as_int64(int64_t &out) const {
    if (type_ != Type::Number) return false;
    for (char c : text_)
        if (c == '.' || c == 'e' || c == 'E') return false;
    errno = 0;
    char *end = nullptr;
    long long n = std::strtoll(text_.c_str(), &end, 10);
    if (errno == ERANGE || end == nullptr || *end != '\0') return false;
    out = static_cast<int64_t>(n);
    return true;
}

const Value *Value::find(const std::string &key) const {
    if (type_ != Type::Object) return nullptr;
    for (const auto &m : object_)
        if (m.first == key) return &m.second;
    return nullptr;
}

void Value::set(const std::string &key, Value v) {
    for (auto &m : object_)
        if (m.first == key) { m.second = std::move(v); return; }
    object_.emplace_back(key, std::move(v));
}

const char *Value::type_name(Type t) {
    switch (t) {
        case Type::Null: return "null";
        case Type::Bool: return "boolean";
        case Type::Number: return "number";
        case Type::String: return "string";
        case Type::Array: return "array";
        case Type::Object: return "object";
    }
    return "unknown";
}

namespace {

class Parser {
public:
    Parser(const std::string &s, int max_depth, bool build = true) : s_(s), max_depth_(max_depth), build_(build) {}

    Value document() {
        ws();
        Value v = value(0);
        ws();
        if (pos_ != s_.size()) fail("unexpected characters after the JSON value");
        return v;
    }

private:
    const std::string &s_;
    size_t pos_ = 0;
    int max_depth_;
    bool build_;  // false: only check the grammar (validate), building no values

    [[noreturn]] void fail(const std::string &msg, bool limits = false) {
        throw ParseError(msg + " at offset " + std::to_string(pos_), pos_, limits);
    }
    void ws() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
            ++pos_;
    }
    bool eat(char c) {
        if (pos_ < s_.size() && s_[pos_] == c) { ++pos_; return true; }
        return false;
    }
    void literal(const char *word) {
        for (const char *p = word; *p; ++p)
            if (!eat(*p)) fail(std::string("invalid literal, expected \"") + word + "\"");
    }

    Value value(int depth) {
        if (depth > max_depth_) fail("JSON nested too deeply", true);
        if (pos_ >= s_.size()) fail("unexpected end of input");
        char c = s_[pos_];
        switch (c) {
            case '{': return object(depth);
            case '[': return array(depth);
            case '"': return Value::string(string());
            case 't': literal("true"); return Value::boolean(true);
            case 'f': literal("false"); return Value::boolean(false);
            case 'n': literal("null"); return Value::null();
            default:
                if (c == '-' || (c >= '0' && c <= '9')) return number();
                fail(std::string("unexpected character '") + c + "'");
        }
    }

    Value object(int depth) {
        ++pos_;  // {
        Value::Object members;
        ws();
        if (eat('}')) return Value::object(std::move(members));
        for (;;) {
            ws();
            if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string key");
            std::string key = string();
            ws();
            if (!eat(':')) fail("expected ':'");
            ws();
            Value v = value(depth + 1);
            if (build_) members.emplace_back(std::move(key), std::move(v));
            ws();
            if (eat(',')) continue;
            if (eat('}')) break;
            fail("expected ',' or '}'");
        }
        return Value::object(std::move(members));
    }

    Value array(int depth) {
        ++pos_;  // [
        Value::Array items;
        ws();
        if (eat(']')) return Value::array(std::move(items));
        for (;;) {
            ws();
            Value v = value(depth + 1);
            if (build_) items.push_back(std::move(v));
            ws();
            if (eat(',')) continue;
            if (eat(']')) break;
            fail("expected ',' or ']'");
        }
        return Value::array(std::move(items));
    }

    static bool digit(char c) { return c >= '0' && c <= '9'; }

    Value number() {
        size_t start = pos_;
        eat('-');
        if (pos_ >= s_.size()) fail("invalid number");
        if (s_[pos_] == '0') {
            ++pos_;
        } else if (digit(s_[pos_])) {
            while (pos_ < s_.size() && digit(s_[pos_])) ++pos_;
        } else {
            fail("invalid number");
        }
        if (eat('.')) {
            if (pos_ >= s_.size() || !digit(s_[pos_])) fail("invalid number");
            while (pos_ < s_.size() && digit(s_[pos_])) ++pos_;
        }
        if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
            ++pos_;
            if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
            if (pos_ >= s_.size() || !digit(s_[pos_])) fail("invalid number");
            while (pos_ < s_.size() && digit(s_[pos_])) ++pos_;
        }
        return build_ ? Value::number(s_.substr(start, pos_ - start)) : Value();
    }

    unsigned hex4() {
        if (pos_ + 4 > s_.size()) fail("invalid \\u escape");
        unsigned v = 0;
        for (int i = 0; i < 4; ++i) {
            char c = s_[pos_++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= unsigned(c - '0');
            else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
            else fail("invalid \\u escape");
        }
        return v;
    }

    static void utf8(std::string &out, unsigned cp) {
        if (cp < 0x80) {
            out += char(cp);
        } else if (cp < 0x800) {
            out += char(0xC0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += char(0xE0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3F));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        }
    }

    std::string string() {
        ++pos_;  // opening quote
        std::string out;
        for (;;) {
            if (pos_ >= s_.size()) fail("unterminated string");
            char c = s_[pos_++];
            if (c == '"') break;
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
            if (c != '\\') {
                if (build_) out += c;
                continue;
            }
            if (pos_ >= s_.size()) fail("unterminated string");
            char e = s_[pos_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned cp = hex4();
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (!(eat('\\') && eat('u'))) fail("unpaired surrogate in \\u escape", true);
                        unsigned lo = hex4();
                        if (lo < 0xDC00 || lo > 0xDFFF) fail("invalid surrogate pair in \\u escape", true);
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        fail("unpaired surrogate in \\u escape", true);
                    }
                    if (cp == 0) fail("\\u0000 is not allowed", true);
                    utf8(out, cp);
                    break;
                }
                default: fail("invalid escape");
            }
        }
        return out;
    }
};

void write(std::string &out, const Value &v) {
    switch (v.type()) {
        case Value::Type::Null: out += "null"; break;
        case Value::Type::Bool: out += v.as_bool() ? "true" : "false"; break;
        case Value::Type::Number: out += v.as_string(); break;
        case Value::Type::String: out += quote(v.as_string()); break;
        case Value::Type::Array: {
            out += '[';
            bool first = true;
            for (const auto &item : v.as_array()) {
                if (!first) out += ", ";
                first = false;
                write(out, item);
            }
            out += ']';
            break;
        }
        case Value::Type::Object: {
            out += '{';
            bool first = true;
            for (const auto &m : v.as_object()) {
                if (!first) out += ", ";
                first = false;
                out += quote(m.first);
                out += ": ";
                write(out, m.second);
            }
            out += '}';
            break;
        }
    }
}

}  // namespace

Value parse(const std::string &text, int max_depth) { return Parser(text, max_depth).document(); }

void validate(const std::string &text, int max_depth) { (void)Parser(text, max_depth, false).document(); }

std::string serialize(const Value &v) {
    std::string out;
    write(out, v);
    return out;
}

std::string quote(const std::string &s) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (c < 0x20) {
                    out += "\\u00";
                    out += hex[c >> 4];
                    out += hex[c & 0xF];
                } else {
                    out += char(c);
                }
        }
    }
    out += '"';
    return out;
}

}  // namespace pw::json
