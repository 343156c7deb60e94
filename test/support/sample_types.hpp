// A user type for the typed round trips (queue payloads, cache values): a struct with a
// string, a number and a list, converted to and from JSON through tag_invoke.
#pragma once

#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <string>
#include <utility>
#include <vector>

namespace redcoord::test {

struct sample_record {
    std::string name;
    int number = 0;
    std::vector<std::string> tags;
    bool operator==(const sample_record&) const = default;
};

inline void tag_invoke(const boost::json::value_from_tag&, boost::json::value& jv,
                       const sample_record& r) {
    jv = {{"name", r.name}, {"number", r.number}, {"tags", boost::json::value_from(r.tags)}};
}

inline sample_record tag_invoke(const boost::json::value_to_tag<sample_record>&,
                                const boost::json::value& jv) {
    const auto& o = jv.as_object();
    sample_record r;
    r.name = boost::json::value_to<std::string>(o.at("name"));
    r.number = boost::json::value_to<int>(o.at("number"));
    r.tags = boost::json::value_to<std::vector<std::string>>(o.at("tags"));
    return r;
}

inline sample_record make_sample_record(std::string name, int number,
                                        std::vector<std::string> tags) {
    sample_record r;
    r.name = std::move(name);
    r.number = number;
    r.tags = std::move(tags);
    return r;
}

}  // namespace redcoord::test
