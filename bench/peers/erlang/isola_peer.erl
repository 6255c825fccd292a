%% SPDX-License-Identifier: MIT
%% Erlang/OTP peer for the isola benchmarks (see bench/README.md).
%%
%% Actors are Erlang processes and messages are ordinary sends. Each
%% benchmark runs in a driver process spawned by main/1, prints lines
%% "erlang <bench> <metric> <value> <unit>", checks its own result and halts
%% the VM with status 1 if the check fails (0 otherwise). Every run ends
%% with the VM's peak RSS, "peak_rss_kb" (VmHWM). bench/run starts the VM
%% with +S cores (one scheduler per core, the default too).
%%
%% Run compiled (not as an interpreted escript):
%%   erlc -o OUTDIR isola_peer.erl
%%   erl -noshell +P 2000000 -pa OUTDIR -run isola_peer main pingpong 200000
%% (+P raises the process-table limit so skynet's ~1.1M live processes fit;
%% it is a limit, not a performance setting.)
-module(isola_peer).
-export([main/1]).

%% ------------------------------------------------------------------ main

main(Args) ->
    Self = self(),
    {Pid, Ref} = spawn_monitor(fun() -> Self ! {result, self(), run(Args)} end),
    receive
        {result, Pid, ok} -> erlang:halt(0);
        {'DOWN', Ref, process, Pid, Reason} ->
            io:format(standard_error, "erlang: FAILED: ~p~n", [Reason]),
            erlang:halt(1)
    end.

run([Bench | Rest]) ->
    Ints = [list_to_integer(A) || A <- Rest],
    case {Bench, Ints} of
        {"pingpong", [N]}       -> pingpong(N);
        {"ring", [P, T]}        -> ring(P, T);
        {"spawn", [N]}          -> spawn_bench("spawn", N);
        {"idle1m", [N]}         -> spawn_bench("idle1m", N);
        {"fanin", [P, M]}       -> fanin(P, M);
        {"skynet", [Size, Div]} -> skynet(Size, Div);
        {"payload", [S, N]}     -> payload(S, N);
        {"pairs", [K, N]}       -> pairs(K, N);
        {"crossworker", [N]}    -> crossworker(N);
        {"hog", [N, H]}         -> hog(N, H);
        {"kill", [N]}           -> kill(N);
        {"timers", [T, I]}      -> timers(T, I);
        {"tcpecho", [C, _R, Port]} -> tcpecho(C, Port);
        _ -> usage()
    end,
    report(Bench, "peak_rss_kb", status_kb(<<"VmHWM:">>), "kB"),
    ok;
run(_) -> usage().

usage() ->
    io:format(standard_error, "usage: pingpong N | ring P T | spawn N | fanin P M"
              " | skynet SIZE DIV | payload S N | pairs K N | crossworker N"
              " | hog N H | idle1m N | kill N | timers T I | tcpecho C R PORT~n", []),
    erlang:halt(2).

%% ---------------------------------------------------------------- helpers

report(Bench, Metric, Value, Unit) ->
    io:format("erlang ~s ~s ~.3f ~s~n", [Bench, Metric, float(Value), Unit]).

%% check(Cond, Fmt, Args): exit (so main/1 halts with 1) if Cond is false.
check(true, _, _) -> ok;
check(false, Fmt, Args) ->
    io:format(standard_error, "erlang: CHECK FAILED: " ++ Fmt ++ "~n", Args),
    erlang:halt(1).

now_ns() -> erlang:monotonic_time(nanosecond).

%% A field of /proc/self/status of the VM process (VmRSS, VmHWM), in KiB.
status_kb(Field) ->
    {ok, Bin} = file:read_file("/proc/self/status"),
    [Line] = [L || L <- binary:split(Bin, <<"\n">>, [global]),
                   binary:part(L, 0, min(6, byte_size(L))) =:= Field],
    [_, Kb | _] = binary:split(Line, [<<" ">>, <<"\t">>], [global, trim_all]),
    binary_to_integer(Kb).

%% VmRSS of the VM process, in bytes.
rss_bytes() -> status_kb(<<"VmRSS:">>) * 1024.

%% --------------------------------------------------------------- pingpong
%% The message carries the port (pid) to reply on, as in BENCHMARKS.md.

pong() ->
    receive
        {From, 0} -> From ! {self(), 0};
        {From, N} -> From ! {self(), N}, pong()
    end.

ping(_Pong, 0, Got) -> Got;
ping(Pong, N, Got) ->
    Pong ! {self(), N},
    receive {Pong, N} -> ping(Pong, N - 1, Got + 1) end.

pingpong(N) ->
    Pong = spawn(fun pong/0),
    T0 = now_ns(),
    Got = ping(Pong, N, 0),
    Elapsed = now_ns() - T0,
    Pong ! {self(), 0},
    receive {Pong, 0} -> ok end,
    check(Got =:= N, "pingpong: ~p round trips, want ~p", [Got, N]),
    report("pingpong", "ns_per_roundtrip", Elapsed / N, "ns").

%% ------------------------------------------------------------------- ring
%% Member I forwards Token-1 to the next member; the one that receives 0
%% tells the driver. On stop each member reports how many hops it made.

ring_member(Driver, I) ->
    receive {next, Next} -> ring_loop(Driver, I, Next, 0) end.

ring_loop(Driver, I, Next, Hops) ->
    receive
        stop -> Driver ! {hops, Hops};
        0 -> Driver ! {zero, I}, ring_loop(Driver, I, Next, Hops);
        Tok -> Next ! Tok - 1, ring_loop(Driver, I, Next, Hops + 1)
    end.

ring(P, T) when P >= 2, T >= 1 ->
    D = self(),
    Pids = [spawn(fun() -> ring_member(D, I) end) || I <- lists:seq(0, P - 1)],
    [Pid ! {next, Next} || {Pid, Next} <- lists:zip(Pids, tl(Pids) ++ [hd(Pids)])],
    T0 = now_ns(),
    hd(Pids) ! T,
    Last = receive {zero, I} -> I end,
    Elapsed = now_ns() - T0,
    [Pid ! stop || Pid <- Pids],
    Total = lists:sum([receive {hops, H} -> H end || _ <- Pids]),
    check(Total =:= T andalso Last =:= T rem P,
          "ring: ~p hops (want ~p), 0 seen by ~p (want ~p)", [Total, T, Last, T rem P]),
    report("ring", "ns_per_hop", Elapsed / T, "ns");
ring(_, _) -> usage().

%% ------------------------------------------------------------------ spawn
%% Each process confirms it started, then waits for stop and answers with
%% its index. "Ended" is checked with is_process_alive/1 after all answers.

idle(Driver, I) ->
    Driver ! started,
    receive stop -> Driver ! {bye, I} end.

wait_n(0, _) -> ok;
wait_n(K, Msg) -> receive Msg -> wait_n(K - 1, Msg) end.

sum_byes(0, Acc) -> Acc;
sum_byes(K, Acc) -> receive {bye, I} -> sum_byes(K - 1, Acc + I) end.

wait_all_dead(Pids) ->
    case [P || P <- Pids, is_process_alive(P)] of
        [] -> ok;
        Alive -> erlang:yield(), wait_all_dead(Alive)
    end.

spawn_bench(Name, N) ->
    D = self(),
    RssBefore = rss_bytes(),
    T0 = now_ns(),
    Pids = [spawn(fun() -> idle(D, I) end) || I <- lists:seq(0, N - 1)],
    wait_n(N, started),
    SpawnNs = now_ns() - T0,
    RssAlive = rss_bytes(),
    T1 = now_ns(),
    [P ! stop || P <- Pids],
    Sum = sum_byes(N, 0),
    wait_all_dead(Pids),
    StopNs = now_ns() - T1,
    check(Sum =:= N * (N - 1) div 2, "spawn: answers sum ~p", [Sum]),
    report(Name, "ns_per_spawn", SpawnNs / N, "ns"),
    report(Name, "bytes_per_idle", (RssAlive - RssBefore) / N, "B"),
    report(Name, "ns_per_stop", StopNs / N, "ns").

%% ------------------------------------------------------------------ fanin

consumer(Driver, Total) -> consume(Driver, Total, 0, 0).

consume(Driver, Total, Total, Sum) -> Driver ! {fanin_done, Total, Sum};
consume(Driver, Total, Count, Sum) ->
    receive X -> consume(Driver, Total, Count + 1, Sum + X) end.

produce(_, 0) -> ok;
produce(C, I) -> C ! I, produce(C, I - 1).

fanin(P, M) ->
    D = self(),
    Total = P * M,
    C = spawn(fun() -> consumer(D, Total) end),
    T0 = now_ns(),
    [spawn(fun() -> produce(C, M) end) || _ <- lists:seq(1, P)],
    {Count, Sum} = receive {fanin_done, Cn, Sm} -> {Cn, Sm} end,
    Elapsed = now_ns() - T0,
    check(Count =:= Total andalso Sum =:= P * M * (M + 1) div 2,
          "fanin: count ~p sum ~p", [Count, Sum]),
    report("fanin", "msgs_per_s", Total / (Elapsed / 1.0e9), "msg/s"),
    report("fanin", "rss_after_drain_kb", settled_rss_kb(), "kB").

%% rss_after_drain_kb, the same rule in every system: VmRSS (KiB) once it
%% has not changed for 500 ms, read every 10 ms from the end of the drain,
%% at most 5 s.
settled_rss_kb() -> settle(status_kb(<<"VmRSS:">>), 0, 0).

settle(Last, Same, I) when Same >= 50; I >= 500 -> Last;
settle(Last, Same, I) ->
    timer:sleep(10),
    case status_kb(<<"VmRSS:">>) of
        Last -> settle(Last, Same + 1, I + 1);
        Now -> settle(Now, 0, I + 1)
    end.

%% ----------------------------------------------------------------- skynet

sky(Parent, Num, 1, _Div) -> Parent ! {sky, Num};
sky(Parent, Num, Size, Div) ->
    Self = self(),
    Sub = Size div Div,
    [spawn(fun() -> sky(Self, Num + I * Sub, Sub, Div) end) || I <- lists:seq(0, Div - 1)],
    Parent ! {sky, sky_collect(Div, 0)}.

sky_collect(0, Acc) -> Acc;
sky_collect(K, Acc) -> receive {sky, X} -> sky_collect(K - 1, Acc + X) end.

power_of(1, _) -> true;
power_of(S, D) when S rem D =:= 0 -> power_of(S div D, D);
power_of(_, _) -> false.

skynet(Size, Div) ->
    check(Div >= 2 andalso power_of(Size, Div), "skynet: SIZE must be a power of DIV", []),
    D = self(),
    T0 = now_ns(),
    spawn(fun() -> sky(D, 0, Size, Div) end),
    Sum = receive {sky, X} -> X end,
    Elapsed = now_ns() - T0,
    Want = Size * (Size - 1) div 2,
    check(Sum =:= Want, "skynet: sum ~p, want ~p", [Sum, Want]),
    io:format("erlang skynet sum ~p sum~n", [Sum]),
    report("skynet", "ms_total", Elapsed / 1.0e6, "ms").

%% ---------------------------------------------------------------- payload
%% A binary larger than 64 bytes lives off-heap and is reference-counted, so
%% a plain send passes a small handle to the same bytes: that is "transfer".
%% "copy" makes a fresh binary with binary:copy/1 before every send, as the
%% Go and CAF peers allocate and copy before every send.

pattern(S) -> << <<((I * 7 + (I bsr 8)) band 255)>> || I <- lists:seq(0, S - 1) >>.

probe(Bin, S, K) ->
    J = (K * 4099) rem S,
    check(byte_size(Bin) =:= S andalso binary:at(Bin, J) =:= (J * 7 + (J bsr 8)) band 255,
          "payload: corrupted buffer at hop ~p", [K]).

prep(Bin, copy) -> binary:copy(Bin);
prep(Bin, transfer) -> Bin.

echo(_, _, N, N, _) -> ok;
echo(A, S, K, N, Mode) ->
    receive {buf, Bin} -> probe(Bin, S, K), A ! {buf, prep(Bin, Mode)} end,
    echo(A, S, K + 1, N, Mode).

bounce(_, Bin, _, N, N, _) -> Bin;
bounce(B, Bin, S, K, N, Mode) ->
    B ! {buf, prep(Bin, Mode)},
    receive {buf, Back} -> probe(Back, S, K), bounce(B, Back, S, K + 1, N, Mode) end.

payload_run(S, N, Mode, Pattern) ->
    A = self(),
    B = spawn(fun() -> echo(A, S, 0, N, Mode) end),
    T0 = now_ns(),
    Final = bounce(B, Pattern, S, 0, N, Mode),
    Elapsed = now_ns() - T0,
    check(Final =:= Pattern, "payload: final buffer differs", []),
    Elapsed.

%% Copy: N round trips (2N sends); transfer: 50N round trips (100N sends),
%% as in every system, so that the run is long enough to time.
payload(S, N) when S >= 1, N >= 1 ->
    Pattern = pattern(S),
    Tc = payload_run(S, N, copy, Pattern),
    Tt = payload_run(S, 50 * N, transfer, Pattern),
    report("payload", "copy_gbps", S * 2 * N / (Tc / 1.0e9) / 1.0e9, "GB/s"),
    report("payload", "transfer_ns", Tt / (100 * N), "ns");
payload(_, _) -> usage().

%% ----------------------------------------------------------- second round
%% Round-trip times are kept as 32-bit integers in a binary (4 bytes each,
%% as the other systems keep them); quantile = the value at floor(P * n) of
%% the sorted samples, the same rule everywhere.

quantile(Sorted, Len, P) -> element(min(Len, trunc(P * Len) + 1), Sorted).

report_latency(Bench, Samples, Which) ->
    L = lists:sort([X || <<X:32>> <= Samples]),
    Len = length(L),
    T = list_to_tuple(L),
    [report(Bench, Name, quantile(T, Len, P), "ns") || {Name, P} <- Which],
    T.

clamp(D) when D < 0 -> 0;
clamp(D) when D > 16#ffffffff -> 16#ffffffff;
clamp(D) -> D.

%% A timed pinger: N round trips with Pong, each timed; sends the samples
%% to Driver. It waits for go first.
tping(Driver, N, Opts) ->
    Pong = spawn_opt(fun pong/0, Opts),
    Driver ! {ready, self()},
    receive go -> ok end,
    Samples = tping_loop(Pong, N, now_ns(), <<>>),
    Pong ! {self(), 0},
    receive {Pong, 0} -> ok end,
    Driver ! {samples, self(), Samples}.

tping_loop(_Pong, 0, _T0, Acc) -> Acc;
tping_loop(Pong, N, T0, Acc) ->
    Pong ! {self(), N},
    receive {Pong, N} -> ok end,
    T = now_ns(),
    tping_loop(Pong, N - 1, T, <<Acc/binary, (clamp(T - T0)):32>>).

start_pingers(K, N, Opts) ->
    D = self(),
    Pids = [spawn_opt(fun() -> tping(D, N, Opts) end, Opts) || _ <- lists:seq(1, K)],
    [receive {ready, P} -> ok end || P <- Pids],
    Pids.

collect(Pids) ->
    iolist_to_binary([receive {samples, P, S} -> S end || P <- Pids]).

pairs(K, N) ->
    Pids = start_pingers(K, N, []),
    T0 = now_ns(),
    [P ! go || P <- Pids],
    All = collect(Pids),
    Elapsed = now_ns() - T0,
    check(byte_size(All) =:= 4 * K * N, "pairs: ~p samples", [byte_size(All) div 4]),
    report("pairs", "msgs_per_s", 2 * K * N / (Elapsed / 1.0e9), "msg/s"),
    report_latency("pairs", All, [{"p50_ns", 0.5}, {"p99_ns", 0.99}, {"p999_ns", 0.999}]).

%% The two ends bound to schedulers 1 and 2 (spawn_opt's {scheduler, N}),
%% so that every hop crosses schedulers.
crossworker(N) ->
    D = self(),
    Two = min(2, erlang:system_info(schedulers_online)),
    Pong = spawn_opt(fun pong/0, [{scheduler, Two}]),
    Ping = spawn_opt(fun() ->
                             receive go -> ok end,
                             S = tping_loop(Pong, N, now_ns(), <<>>),
                             Pong ! {self(), 0},
                             receive {Pong, 0} -> ok end,
                             D ! {samples, self(), S}
                     end, [{scheduler, 1}]),
    Ping ! go,
    All = collect([Ping]),
    check(byte_size(All) =:= 4 * N, "crossworker: ~p samples", [byte_size(All) div 4]),
    report_latency("crossworker", All, [{"p50_ns", 0.5}, {"p99_ns", 0.99}, {"p999_ns", 0.999}]).

spin(X, 0) -> X;
spin(X, K) -> spin((X * 6364136223846793005 + 1) band 16#ffffffffffffffff, K - 1).

hog_loop(End, Turns) ->
    case now_ns() < End of
        true -> _ = spin(1, 100), hog_loop(End, Turns + 1);
        false -> Turns
    end.

%% A process computes for H ms (the VM preempts it by reductions) while a
%% timed pair makes N round trips.
hog(N, H) ->
    D = self(),
    Hog = spawn(fun() -> receive go -> ok end,
                         D ! {hog_done, hog_loop(now_ns() + H * 1000000, 0)} end),
    [Ping] = start_pingers(1, N, []),
    Hog ! go,
    Ping ! go,
    All = collect([Ping]),
    Turns = receive {hog_done, Tn} -> Tn end,
    check(Turns > 0 andalso byte_size(All) =:= 4 * N, "hog: ~p samples", [byte_size(All) div 4]),
    Sorted = report_latency("hog", All, [{"p99_ns", 0.99}]),
    report("hog", "max_ns", element(N, Sorted), "ns").

busy_loop(X) -> busy_loop(spin(X, 100)).

%% exit(Pid, kill) for N idle processes, each monitored; then for a busy one.
kill(N) ->
    D = self(),
    Pids = [spawn(fun() -> D ! started, receive stop -> ok end end) || _ <- lists:seq(1, N)],
    wait_n(N, started),
    Refs = [erlang:monitor(process, P) || P <- Pids],
    T0 = now_ns(),
    [exit(P, kill) || P <- Pids],
    [receive {'DOWN', R, process, _, killed} -> ok end || R <- Refs],
    KillNs = now_ns() - T0,
    Busy = spawn(fun() -> D ! running, busy_loop(1) end),
    BRef = erlang:monitor(process, Busy),
    receive running -> ok end,
    T1 = now_ns(),
    exit(Busy, kill),
    receive {'DOWN', BRef, process, _, killed} -> ok end,
    BusyNs = now_ns() - T1,
    report("kill", "ns_per_kill", KillNs / N, "ns"),
    report("kill", "busy_kill_us", BusyNs / 1000, "us").

%% Process I of Is starts Per = T/Is one-shot timers (erlang:send_after),
%% timer J with a delay of (I*Per + J) mod 11 ms, and counts the firings.
timers(T, Is) when Is >= 1, T >= Is, T rem Is =:= 0 ->
    D = self(),
    Per = T div Is,
    T0 = now_ns(),
    [spawn(fun() ->
                   [erlang:send_after((I * Per + J) rem 11, self(), tick) || J <- lists:seq(0, Per - 1)],
                   wait_n(Per, tick),
                   D ! {fired, Per}
           end) || I <- lists:seq(0, Is - 1)],
    Total = lists:sum([receive {fired, F} -> F end || _ <- lists:seq(1, Is)]),
    Elapsed = now_ns() - T0,
    check(Total =:= T, "timers: ~p fired", [Total]),
    report("timers", "timers_per_s", T / (Elapsed / 1.0e9), "timer/s");
timers(_, _) -> usage().

%% gen_tcp with {active, once}: a process per connection writes back what
%% it gets; the server ends when C connections have closed.
tcpecho(C, Port) ->
    D = self(),
    {ok, L} = gen_tcp:listen(Port, [binary, {packet, raw}, {active, false},
                                    {reuseaddr, true}, {ip, {127, 0, 0, 1}},
                                    {nodelay, true}, {backlog, 1024}]),
    spawn_link(fun() -> acceptor(L, D) end),
    wait_n(C, closed),
    gen_tcp:close(L).

acceptor(L, D) ->
    case gen_tcp:accept(L) of
        {ok, S} ->
            P = spawn(fun() -> receive {go, S} -> echo_conn(S, D) end end),
            ok = gen_tcp:controlling_process(S, P),
            P ! {go, S},
            acceptor(L, D);
        {error, _} -> ok
    end.

echo_conn(S, D) ->
    ok = inet:setopts(S, [{active, once}]),
    receive
        {tcp, S, Data} -> ok = gen_tcp:send(S, Data), echo_conn(S, D);
        {tcp_closed, S} -> D ! closed;
        {tcp_error, S, _} -> gen_tcp:close(S), D ! closed
    end.
