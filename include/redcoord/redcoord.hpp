// The whole public API of redcoord.
#pragma once

#include <redcoord/config.hpp>
#include <redcoord/connection.hpp>
#include <redcoord/diagnostics.hpp>
#include <redcoord/error.hpp>
#include <redcoord/keyspace.hpp>
#include <redcoord/lease.hpp>
#include <redcoord/lock.hpp>
#include <redcoord/request.hpp>
#include <redcoord/response.hpp>
#include <redcoord/resp3/node.hpp>
#include <redcoord/resp3/parser.hpp>
#include <redcoord/resp3/type.hpp>
#include <redcoord/script.hpp>
#include <redcoord/session.hpp>
