// A small, strict JSON model (RFC 8259) for the pure C++ parts: pipeline definitions, HTTP bodies.
// No Postgres headers here: this file is unit-tested on its own.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace pw::json {

struct ParseError : std::runtime_error {
    size_t offset;
    // The text is JSON by its grammar, refused only by this parser's (and jsonb's) limits: nesting depth,
    // \u0000, unpaired surrogates.
    bool beyond_limits = false;
    ParseError(const std::string &what, size_t at, bool limits = false)
        : std::runtime_error(what), offset(at), beyond_limits(limits) {}
};

class Value {
public:
    enum class Type { Null, Bool, Number, String, Array, Object };
    using Array = std::vector<Value>;
    using Member = std::pair<std::string, Value>;
    using Object = std::vector<Member>;  // keeps document order; duplicate keys are kept as written

    Value() = default;
    static Value null() { return Value(); }
    static Value boolean(bool b) { Value v; v.type_ = Type::Bool; v.bool_ = b; return v; }
    static Value number(std::string text) { Value v; v.type_ = Type::Number; v.text_ = std::move(text); return v; }
    static Value number(int64_t n) { return number(std::to_string(n)); }
    static Value string(std::string s) { Value v; v.type_ = Type::String; v.text_ = std::move(s); return v; }
    static Value array(Array a = {}) { Value v; v.type_ = Type::Array; v.array_ = std::move(a); return v; }
    static Value object(Object o = {}) { Value v; v.type_ = Type::Object; v.object_ = std::move(o); return v; }

    Type type() const { return type_; }
    bool is_null() const { return type_ == Type::Null; }
    bool is_bool() const { return type_ == Type::Bool; }
    bool is_number() const { return type_ == Type::Number; }
    bool is_string() const { return type_ == Type::String; }
    bool is_array() const { return type_ == Type::Array; }
    bool is_object() const { return type_ == Type::Object; }

    bool as_bool() const { return bool_; }
    const std::string &as_string() const { return text_; }     // string contents, or number text
    const Array &as_array() const { return array_; }
    Array &as_array() { return array_; }
    const Object &as_object() const { return object_; }
    Object &as_object() { return object_; }

    // Integer value of a number with no fraction/exponent that fits in int64; false otherwise.
    bool as_int64(int64_t &out) const;
    // First member named key, or nullptr.
    const Value *find(const std::string &key) const;
    void set(const std::string &key, Value v);  // replace first member named key, or append

    static const char *type_name(Type t);
    const char *type_name() const { return type_name(type_); }

private:
    Type type_ = Type::Null;
    bool bool_ = false;
    std::string text_;
    Array array_;
    Object object_;
};

// Parses exactly one JSON document (surrounding white space allowed). Throws ParseError.
Value parse(const std::string &text, int max_depth = 256);
// parse's checks (the same ParseError), building nothing: a large document costs no memory beyond its text.
void validate(const std::string &text, int max_depth = 256);
// Compact serialisation.
std::string serialize(const Value &v);
// JSON string literal for s (with quotes).
std::string quote(const std::string &s);

}  // namespace pw::json
