%% SPDX-License-Identifier: MIT
%% The Erlang peer of bench/cluster-bench.c: the same cross-node ping-pong
%% and one-way throughput between two Erlang nodes of this machine
%% (distribution over TCP), run by bench/cluster-run:
%%   erl -sname bench_a -noshell -pa DIR -run dist_bench main N M
%% starts a second node (bench_b) with peer, spawns an echo and a sink
%% there, and prints "erlang <metric> <value> <unit>" lines.
-module(dist_bench).
-export([main/1, echo/0, sink/1]).

echo() ->
    receive
        {From, Msg} -> From ! Msg, echo();
        stop -> ok
    end.

sink(N) ->
    receive
        {done, From} -> From ! {count, N}, sink(0);
        stop -> ok;
        _ -> sink(N + 1)
    end.

main([NS, MS]) ->
    N = list_to_integer(NS),
    M = list_to_integer(MS),
    Dir = filename:dirname(code:which(?MODULE)),
    {ok, Peer, Node} = peer:start_link(#{name => bench_b,
                                         args => ["-pa", Dir]}),
    Echo = spawn(Node, ?MODULE, echo, []),
    Sink = spawn(Node, ?MODULE, sink, [0]),
    [begin Echo ! {self(), I}, receive I -> ok end end
     || I <- lists:seq(1, 100)],
    Times = [begin
                 T0 = erlang:monotonic_time(nanosecond),
                 Echo ! {self(), I},
                 receive I -> ok end,
                 erlang:monotonic_time(nanosecond) - T0
             end || I <- lists:seq(1, N)],
    Sorted = lists:sort(Times),
    P50 = lists:nth(N div 2 + 1, Sorted) / 1000,
    P99 = lists:nth((N * 99) div 100 + 1, Sorted) / 1000,
    io:format("erlang pingpong_p50 ~.1f us~n", [P50]),
    io:format("erlang pingpong_p99 ~.1f us~n", [P99]),
    T1 = erlang:monotonic_time(nanosecond),
    [Sink ! I || I <- lists:seq(1, M)],
    Sink ! {done, self()},
    receive {count, C} -> ok end,
    Secs = (erlang:monotonic_time(nanosecond) - T1) / 1.0e9,
    C =:= M orelse io:format(standard_error, "sink counted ~p of ~p~n", [C, M]),
    io:format("erlang oneway ~w msg/s~n", [round(M / Secs)]),
    Echo ! stop,
    Sink ! stop,
    peer:stop(Peer),
    init:stop().
