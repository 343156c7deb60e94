// A cluster_worker child process (test/support/cluster_worker.cpp) for the membership, leader,
// barrier and queue tests (see worker_process.hpp).
#pragma once

#include "worker_process.hpp"

#include <string>
#include <utility>
#include <vector>

#ifndef REDCOORD_CLUSTER_WORKER
#error "REDCOORD_CLUSTER_WORKER must name the cluster_worker executable"
#endif

namespace redcoord::test {

class cluster_process : public worker_process {
public:
    /// Starts `cluster_worker args...`.
    explicit cluster_process(std::vector<std::string> args)
        : worker_process(REDCOORD_CLUSTER_WORKER, std::move(args)) {}
};

}  // namespace redcoord::test
