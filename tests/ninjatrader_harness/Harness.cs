// Harness.cs -- console driver for the NinjaTrader-free helpers in ninjatrader/AddOns/AITradingBridge/.
//
// Built by tests/test_ninjatrader.py:
//   mcs -langversion:5 -out:harness.exe Harness.cs ../../ninjatrader/AddOns/AITradingBridge/*.cs
// Run as:
//   mono harness.exe <scenario> <endpoint> [key=value ...]
// Every result is one JSON object per line on stdout (written with AitbJsonWriter, so
// the Python side parsing them also checks the writer); the session's log goes to stderr.
//
// Scenarios
//   session  hello + history, then live bars with a simulated broker (see SimBroker);
//            pause_after=N stops after N live bars, prints {"event":"pause"} and waits
//            for a line on stdin (the test kills, restarts or freezes the daemon there).
//   probe    start + one bar against an endpoint that may be dead or hostile; reports
//            how long giving up took.
//   worker   the background worker: Enqueue* must return at once, decisions in order.
//   echo     transport only, against a REP echo server: frame sizes around the short/long
//            boundary and large bodies come back byte-identical.
//   json     JSON writer/reader self-checks plus a sample for Python to parse.
//   trail    reads "side stop best trail close tick" lines, prints AitbTrail.NextStop.
//   rules    AitbGuard checks: what the strategy refuses to execute.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Threading;
using NinjaTrader.NinjaScript.AddOns.AITradingBridgeClient;

public static class Harness
{
    private static readonly object OutputGate = new object();
    private static Dictionary<string, string> options = new Dictionary<string, string>();

    public static int Main(string[] args)
    {
        if (args.Length < 1)
        {
            Console.Error.WriteLine("usage: harness.exe <scenario> [endpoint] [key=value ...]");
            return 2;
        }
        string scenario = args[0];
        string endpoint = args.Length > 1 ? args[1] : "";
        for (int i = 2; i < args.Length; i++)
        {
            int eq = args[i].IndexOf('=');
            if (eq > 0) options[args[i].Substring(0, eq)] = args[i].Substring(eq + 1);
        }
        switch (scenario)
        {
            case "session": return RunSession(endpoint);
            case "probe": return RunProbe(endpoint);
            case "worker": return RunWorker(endpoint);
            case "echo": return RunEcho(endpoint);
            case "json": return RunJson();
            case "trail": return RunTrail();
            case "rules": return RunRules();
        }
        Console.Error.WriteLine("unknown scenario " + scenario);
        return 2;
    }

    // ---------------------------------------------------------------- helpers

    private static int Opt(string key, int fallback)
    {
        string value;
        return options.TryGetValue(key, out value) ? int.Parse(value, CultureInfo.InvariantCulture) : fallback;
    }

    private static string Opt(string key, string fallback)
    {
        string value;
        return options.TryGetValue(key, out value) ? value : fallback;
    }

    private static void Emit(AitbJsonWriter w)
    {
        string line = w.EndObject().ToString();
        lock (OutputGate) Console.Out.WriteLine(line);
    }

    private static AitbJsonWriter Event(string name)
    {
        return new AitbJsonWriter().BeginObject().Prop("event", name);
    }

    private static void Log(string message)
    {
        lock (OutputGate) Console.Error.WriteLine("aitb: " + message);
    }

    private static AitbSession NewSession(string endpoint)
    {
        AitbSessionOptions o = new AitbSessionOptions();
        o.Endpoint = endpoint;
        o.Client = Opt("client", "harness");
        o.Instrument = Opt("instrument", "NQ 12-25");
        o.TimeoutMs = Opt("timeout", 2000);
        o.Tries = Opt("tries", 3);
        o.HistoryChunk = Opt("chunk", 500);
        o.HistoryKeep = Opt("keep", 1000);
        return new AitbSession(o, Log);
    }

    /// <summary>Deterministic NQ-like 1-minute bars (tick 0.25), valid under the protocol.</summary>
    private static List<AitbBar> MakeBars(int count, int seed)
    {
        Random random = new Random(seed);
        List<AitbBar> bars = new List<AitbBar>(count);
        DateTime time = new DateTime(2025, 11, 7, 9, 31, 0);
        double close = 21000.0;
        for (int i = 0; i < count; i++)
        {
            double open = close;
            close = Math.Max(100.0, open + 0.25 * random.Next(-24, 25));
            double high = Math.Max(open, close) + 0.25 * random.Next(0, 12);
            double low = Math.Min(open, close) - 0.25 * random.Next(0, 12);
            bars.Add(new AitbBar(time, open, high, low, close, 200 + random.Next(0, 2000)));
            time = time.AddMinutes(1);
        }
        return bars;
    }

    private static void WriteDecision(AitbJsonWriter w, AitbDecision d)
    {
        w.Prop("seq", d.Seq).Prop("bar_time", AitbJsonWriter.FormatTime(d.BarTime))
            .Prop("outcome", d.Outcome).Prop("action", (long)d.Action).Prop("name", d.Name)
            .Prop("warming_up", d.WarmingUp).Prop("attempts", (long)d.Attempts).Prop("resynced", d.Resynced)
            .Prop("latency_ms", d.LatencyMs);
        w.Name("mask");
        if (d.Mask == null) w.Null();
        else
        {
            w.BeginArray();
            foreach (int m in d.Mask) w.Value((long)m);
            w.EndArray();
        }
        w.Name("stop_price").ValueOrNull(d.StopPrice).Name("target_price").ValueOrNull(d.TargetPrice)
            .Name("trail_points").ValueOrNull(d.TrailPoints)
            .Prop("error_code", d.ErrorCode).Prop("message", d.Message).Prop("raw", d.RawReply);
    }

    // ---------------------------------------------------------------- session

    /// <summary>
    /// A broker as NinjaTrader would run this strategy: a market entry fills at the next
    /// bar's open; the stop (checked first) and target are checked against that bar's
    /// range; trailing moves the stop at the close (AitbTrail); after hold_bars bars the
    /// position is closed at the close, as a trader might flatten by hand. If the model
    /// has not entered for force_after flat bars, the broker opens a position itself so
    /// the in-position path of the protocol is always exercised.
    /// </summary>
    private sealed class SimBroker
    {
        public const double Tick = 0.25;
        public AitbPosition Position = AitbPosition.Flat();
        public int PendingSide;
        public double PendingStop, PendingTarget;
        public bool Trailing;
        public double TrailPoints, Best;
        public int BarsHeld, FlatBars;
        public int ModelEntries, ForcedEntries, Exits, StopMoves, Guarded;

        /// <summary>Intrabar events of <paramref name="bar"/>; returns true if the position changed.</summary>
        public bool OnBarOpen(AitbBar bar)
        {
            if (PendingSide == 0) return false;
            Position = new AitbPosition();
            Position.Side = PendingSide;
            Position.Quantity = 1;
            Position.EntryPrice = bar.Open;
            Position.EntryTime = bar.Time;
            Position.StopPrice = PendingStop;
            Position.TargetPrice = PendingTarget;
            PendingSide = 0;
            Trailing = false;
            BarsHeld = 0;
            return true;
        }

        public bool OnBarRange(AitbBar bar, int holdBars)
        {
            int side = Position.Side;
            if (side == 0) return false;
            bool stopped = side > 0 ? bar.Low <= Position.StopPrice : bar.High >= Position.StopPrice;
            bool target = side > 0 ? bar.High >= Position.TargetPrice : bar.Low <= Position.TargetPrice;
            BarsHeld++;
            if (stopped || target || BarsHeld >= holdBars)
            {
                Position = AitbPosition.Flat();
                Trailing = false;
                Exits++;
                return true;
            }
            if (Trailing)
            {
                Best = side > 0 ? Math.Max(Best, bar.High) : Math.Min(Best, bar.Low);
                double next = AitbTrail.NextStop(side, Position.StopPrice, Best, TrailPoints, bar.Close, Tick);
                if (next != Position.StopPrice) { Position.StopPrice = next; StopMoves++; }
            }
            Position.Trailing = Trailing;
            return false;
        }

        /// <summary>Executes a decision the way AITradingBridge.Execute does.</summary>
        public string Execute(AitbDecision d, AitbBar bar)
        {
            if (!d.IsOk || d.Action == AitbProtocol.Hold) return "hold";
            string refusal = AitbGuard.Refusal(d, Position.Side, PendingSide != 0, bar.Close, Position.StopPrice);
            if (refusal != null) { Guarded++; return "refused: " + refusal; }
            switch (d.Action)
            {
                case AitbProtocol.Buy:
                case AitbProtocol.Sell:
                    PendingSide = d.Action == AitbProtocol.Buy ? 1 : -1;
                    PendingStop = d.StopPrice;
                    PendingTarget = d.TargetPrice;
                    ModelEntries++;
                    return "entry";
                case AitbProtocol.MoveToBreakeven:
                    Position.StopPrice = AitbGuard.SafeStop(Position.Side, Position.StopPrice, d.StopPrice, bar.Close);
                    return "breakeven";
                case AitbProtocol.EnableTrail:
                    if (Trailing) return "trail already on";
                    Trailing = true;
                    TrailPoints = d.TrailPoints;
                    Best = bar.Close;
                    Position.Trailing = true;
                    return "trail on";
                case AitbProtocol.DisableTrail:
                    Trailing = false;
                    Position.Trailing = false;
                    Position.StopPrice = AitbGuard.SafeStop(Position.Side, Position.StopPrice, d.StopPrice, bar.Close);
                    return "trail off";
            }
            return "hold";
        }

        public void MaybeForceEntry(AitbBar bar, int forceAfter)
        {
            if (Position.Side != 0 || PendingSide != 0) { FlatBars = 0; return; }
            if (++FlatBars < forceAfter) return;
            PendingSide = (ForcedEntries % 2 == 0) ? 1 : -1;
            PendingStop = bar.Close - PendingSide * 40 * Tick;
            PendingTarget = bar.Close + PendingSide * 80 * Tick;
            ForcedEntries++;
            FlatBars = 0;
        }
    }

    private static int RunSession(string endpoint)
    {
        int historyCount = Opt("history", 200);
        int liveCount = Opt("bars", 300);
        int pauseAfter = Opt("pause_after", -1);
        int holdBars = Opt("hold_bars", 12);
        int forceAfter = Opt("force_after", 40);
        List<AitbBar> bars = MakeBars(historyCount + liveCount, Opt("seed", 7));
        SimBroker broker = new SimBroker();
        using (AitbSession session = NewSession(endpoint))
        {
            Stopwatch watch = Stopwatch.StartNew();
            bool started = session.Start(bars.GetRange(0, historyCount));
            Emit(Event("start").Prop("ok", started).Prop("warmup_bars", (long)session.WarmupBars)
                .Prop("ready", session.DaemonReady).Prop("model_version", session.ModelVersion)
                .Prop("elapsed_ms", watch.Elapsed.TotalMilliseconds));
            for (int i = 0; i < liveCount; i++)
            {
                if (i == pauseAfter)
                {
                    Emit(Event("pause").Prop("last_seq", session.LastSeq));
                    Console.In.ReadLine();
                }
                AitbBar bar = bars[historyCount + i];
                if (broker.OnBarOpen(bar)) SendPosition(session, broker, "fill");
                if (broker.OnBarRange(bar, holdBars)) SendPosition(session, broker, "exit");
                AitbPosition sent = broker.Position.Copy();
                AitbDecision d = session.SendBar(bar, sent);
                string executed = broker.Execute(d, bar);
                AitbJsonWriter w = Event("decision");
                WriteDecision(w, d);
                w.Prop("side", (long)sent.Side).Name("sl_price").ValueOrNull(sent.StopPrice)
                    .Prop("trailing", sent.Trailing).Prop("executed", executed);
                Emit(w);
                broker.MaybeForceEntry(bar, forceAfter);
            }
            Emit(Event("summary").Prop("hello_count", (long)session.HelloCount)
                .Prop("history_messages", (long)session.HistoryMessages)
                .Prop("connections", (long)session.ConnectionsOpened)
                .Prop("model_entries", (long)broker.ModelEntries).Prop("forced_entries", (long)broker.ForcedEntries)
                .Prop("exits", (long)broker.Exits).Prop("trail_stop_moves", (long)broker.StopMoves)
                .Prop("guarded", (long)broker.Guarded).Prop("last_seq", session.LastSeq)
                .Prop("last_request", session.LastRequest)
                .Prop("elapsed_ms", watch.Elapsed.TotalMilliseconds));
        }
        return 0;
    }

    private static void SendPosition(AitbSession session, SimBroker broker, string why)
    {
        AitbDecision result = session.SendPosition(broker.Position.Copy());
        Emit(Event("position").Prop("seq", result.Seq).Prop("why", why).Prop("side", (long)broker.Position.Side)
            .Prop("outcome", result.Outcome).Prop("attempts", (long)result.Attempts).Prop("resynced", result.Resynced)
            .Prop("message", result.Message).Prop("raw", result.RawReply));
    }

    // ---------------------------------------------------------------- probe

    private static int RunProbe(string endpoint)
    {
        List<AitbBar> bars = MakeBars(61, 11);
        using (AitbSession session = NewSession(endpoint))
        {
            Stopwatch watch = Stopwatch.StartNew();
            bool started = session.Start(bars.GetRange(0, 60));
            double startMs = watch.Elapsed.TotalMilliseconds;
            AitbDecision d = session.SendBar(bars[60], AitbPosition.Flat());
            AitbJsonWriter w = Event("probe").Prop("started", started).Prop("start_ms", startMs)
                .Prop("elapsed_ms", watch.Elapsed.TotalMilliseconds).Prop("connections", (long)session.ConnectionsOpened);
            WriteDecision(w, d);
            Emit(w);
        }
        return 0;
    }

    // ---------------------------------------------------------------- worker

    private static int RunWorker(string endpoint)
    {
        int count = Opt("bars", 20);
        List<AitbBar> bars = MakeBars(200 + count, 5);
        List<AitbJob> done = new List<AitbJob>();
        object gate = new object();
        AitbSession session = NewSession(endpoint);
        AitbWorker worker = new AitbWorker(session, delegate(AitbJob job)
        {
            lock (gate) { done.Add(job); Monitor.PulseAll(gate); }
        }, Log);
        Stopwatch watch = Stopwatch.StartNew();
        worker.EnqueueStart(bars.GetRange(0, 200));
        for (int i = 0; i < count; i++) worker.EnqueueBar(bars[200 + i], AitbPosition.Flat(), i);
        double enqueueMs = watch.Elapsed.TotalMilliseconds;
        bool complete;
        lock (gate)
        {
            AitbDeadline deadline = new AitbDeadline(Opt("wait_ms", 60000));
            while (done.Count < count && !deadline.Expired) Monitor.Wait(gate, Math.Max(1, deadline.RemainingMs));
            complete = done.Count == count;
        }
        Stopwatch stopWatch = Stopwatch.StartNew();
        worker.Stop(200);
        double stopMs = stopWatch.Elapsed.TotalMilliseconds;
        AitbJsonWriter w = Event("worker").Prop("enqueue_ms", enqueueMs).Prop("complete", complete)
            .Prop("stop_ms", stopMs).Prop("elapsed_ms", watch.Elapsed.TotalMilliseconds);
        w.Name("jobs").BeginArray();
        lock (gate)
        {
            foreach (AitbJob job in done)
                w.BeginObject().Prop("bar_index", (long)job.BarIndex).Prop("seq", job.Decision.Seq)
                    .Prop("outcome", job.Decision.Outcome).Prop("name", job.Decision.Name).EndObject();
        }
        w.EndArray();
        Emit(w);
        return 0;
    }

    // ---------------------------------------------------------------- echo

    private static int RunEcho(string endpoint)
    {
        int[] sizes = { 1, 2, 254, 255, 256, 257, 1000, 65535, 65536, 300000 };
        using (AitbReqTransport transport = new AitbReqTransport(endpoint, 16L * 1024 * 1024))
        {
            foreach (int size in sizes)
            {
                StringBuilder sb = new StringBuilder(size);
                for (int i = 0; i < size; i++) sb.Append((char)('a' + (i * 7 + size) % 26));
                string request = sb.ToString();
                string reply, failure;
                bool ok = transport.TryExchange(request, Opt("timeout", 5000), out reply, out failure);
                Emit(Event("echo").Prop("size", (long)size).Prop("exchanged", ok)
                    .Prop("identical", ok && reply == request).Prop("failure", failure)
                    .Prop("connections", (long)transport.ConnectionsOpened));
            }
        }
        return 0;
    }

    // ---------------------------------------------------------------- json

    private static void Check(string name, bool ok, string detail)
    {
        Emit(Event("check").Prop("name", name).Prop("ok", ok).Prop("detail", detail));
    }

    private static bool Throws(string text)
    {
        try { AitbJsonReader.Parse(text); return false; }
        catch (AitbJsonException) { return true; }
    }

    private static int RunJson()
    {
        // Numbers must not depend on the PC's regional settings (decimal comma in de-DE).
        Thread.CurrentThread.CurrentCulture = new CultureInfo("de-DE");
        Thread.CurrentThread.CurrentUICulture = new CultureInfo("de-DE");

        double[] doubles = { 0.1, 21000.25, 1e-7, 123456789.123456789, -0.0, 5e-324, double.MaxValue, 1.0 / 3.0, 0.30000000000000004, 21003.75 };
        foreach (double value in doubles)
        {
            string text = AitbJsonWriter.FormatNumber(value);
            object back = AitbJsonReader.Parse(text);
            bool exact = back is double && BitConverter.DoubleToInt64Bits((double)back) == BitConverter.DoubleToInt64Bits(value);
            Check("number_roundtrip " + text, exact && text.IndexOf(',') < 0, text);
        }
        bool refusedNaN = false;
        try { AitbJsonWriter.FormatNumber(double.NaN); } catch (ArgumentException) { refusedNaN = true; }
        Check("writer_refuses_nan", refusedNaN, "");
        Check("time_format", AitbJsonWriter.FormatTime(new DateTime(2025, 11, 7, 14, 31, 0)) == "2025-11-07T14:31:00",
            AitbJsonWriter.FormatTime(new DateTime(2025, 11, 7, 14, 31, 0)));

        string tricky = "quote\" backslash\\ slash/ nl\n cr\r tab\t bell\u0007 nul\u0000 e\u00e9 euro\u20ac emoji\ud83d\ude00 del\u007f";
        AitbJsonWriter sample = new AitbJsonWriter();
        sample.BeginObject().Prop("text", tricky).Prop("price", 21000.25).Prop("tiny", 1e-7).Prop("third", 1.0 / 3.0)
            .Prop("big", 9007199254740993L).Prop("neg", -42L).Prop("yes", true).Prop("no", false)
            .Name("nothing").Null().Name("list").BeginArray().Value(1L).Value(2.5).Value("x").BeginObject().EndObject().BeginArray().EndArray().EndArray()
            .Prop("time", AitbJsonWriter.FormatTime(new DateTime(2025, 1, 2, 3, 4, 5, 678))).EndObject();
        string sampleText = sample.ToString();
        bool ascii = true;
        foreach (char c in sampleText) if (c < 0x20 || c > 0x7E) ascii = false;
        Check("writer_output_is_ascii", ascii, sampleText);
        Dictionary<string, object> parsedSample = AitbJsonReader.Parse(sampleText) as Dictionary<string, object>;
        Check("string_roundtrip", parsedSample != null && AitbJson.Str(parsedSample, "text") == tricky, "");
        Emit(Event("json_sample").Prop("text", sampleText));

        // What a Python daemon may send: escapes of every kind, exponents, nesting, spaces.
        string reply = "{ \"ok\" : true, \"v\":1, \"seq\": 17, \"action\": 1, \"name\": \"BUY\", \"mask\": [1,1,1,0,0,0],"
            + " \"probs\": [0.5, 1.5e-3, 2E+1, -0.0, 0, 1e-300], \"warming_up\": false,"
            + " \"orders\": {\"entry\": \"market\", \"stop_price\": 20990.5, \"target_price\": 21021.75},"
            + " \"model_version\": \"demo \\u00e9\\ud83d\\ude00 \\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t\","
            + " \"error\": null, \"nested\": [[[]], {\"a\": {\"b\": [true, false, null]}}]}\r\n";
        Dictionary<string, object> parsed = AitbJsonReader.Parse(reply) as Dictionary<string, object>;
        Check("reader_reply", parsed != null
            && AitbJson.Bool(parsed, "ok", false)
            && AitbJson.Num(parsed, "seq") == 17
            && AitbJson.Num(AitbJson.Obj(parsed, "orders"), "stop_price") == 20990.5
            && AitbJson.Num(AitbJson.Obj(parsed, "orders"), "target_price") == 21021.75
            && AitbJson.Arr(parsed, "probs").Count == 6
            && (double)AitbJson.Arr(parsed, "probs")[2] == 20.0
            && AitbJson.Str(parsed, "model_version") == "demo \u00e9\ud83d\ude00 \"q\" \\ / \b\f\n\r\t"
            && parsed.ContainsKey("error") && parsed["error"] == null, "");

        string[] invalid = {
            "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{'a':1}", "[01]", "[1.]", "[.5]", "[1e]", "[-]",
            "[NaN]", "[Infinity]", "[1e999]", "\"unterminated", "\"bad \\x escape\"", "\"\\u12\"", "\"ctl \u0001 char\"",
            "tru", "nul", "[1] 2", "{\"a\":1}}", "[\"a\" \"b\"]", new string('[', 100) + new string(']', 100), "\u00ff\u00fe garbage"
        };
        foreach (string text in invalid)
            Check("reader_rejects " + text.Substring(0, Math.Min(text.Length, 20)), Throws(text), "");
        Check("reader_accepts_depth_64", !Throws(new string('[', 64) + new string(']', 64)), "");
        return 0;
    }

    // ---------------------------------------------------------------- rules

    private static AitbDecision Decided(int action, double stop, double target, double trail)
    {
        AitbDecision d = new AitbDecision();
        d.Outcome = AitbDecision.OutcomeOk;
        d.Action = action;
        d.Name = AitbProtocol.ActionNames[action];
        d.StopPrice = stop;
        d.TargetPrice = target;
        d.TrailPoints = trail;
        return d;
    }

    private static void Rule(string name, AitbDecision d, int side, bool pending, double close, double stop, bool refused)
    {
        string refusal = AitbGuard.Refusal(d, side, pending, close, stop);
        Check(name, (refusal != null) == refused, refusal ?? "(executed)");
    }

    private static int RunRules()
    {
        double nan = double.NaN;
        Rule("buy_when_flat_executes", Decided(1, 990, 1020, nan), 0, false, 1000, nan, false);
        Rule("sell_when_flat_executes", Decided(2, 1010, 980, nan), 0, false, 1000, nan, false);
        Rule("buy_while_long_refused", Decided(1, 990, 1020, nan), 1, false, 1000, 995, true);
        Rule("sell_while_long_refused", Decided(2, 1010, 980, nan), 1, false, 1000, 995, true);
        Rule("buy_while_short_refused", Decided(1, 990, 1020, nan), -1, false, 1000, 1005, true);
        Rule("buy_while_entry_pending_refused", Decided(1, 990, 1020, nan), 0, true, 1000, nan, true);
        Rule("buy_with_stop_above_close_refused", Decided(1, 1001, 1020, nan), 0, false, 1000, nan, true);
        Rule("sell_with_target_above_close_refused", Decided(2, 1010, 1001, nan), 0, false, 1000, nan, true);
        Rule("breakeven_when_flat_refused", Decided(3, 995, nan, nan), 0, false, 1000, nan, true);
        Rule("trail_when_flat_refused", Decided(4, nan, nan, 5), 0, false, 1000, nan, true);
        Rule("breakeven_long_executes", Decided(3, 995, nan, nan), 1, false, 1000, 990, false);
        Rule("breakeven_long_loosening_refused", Decided(3, 985, nan, nan), 1, false, 1000, 990, true);
        Rule("breakeven_long_above_close_refused", Decided(3, 1000, nan, nan), 1, false, 1000, 990, true);
        Rule("breakeven_short_executes", Decided(3, 1005, nan, nan), -1, false, 1000, 1010, false);
        Rule("breakeven_short_below_close_refused", Decided(3, 999, nan, nan), -1, false, 1000, 1010, true);
        Rule("enable_trail_long_executes", Decided(4, nan, nan, 5), 1, false, 1000, 990, false);
        Rule("disable_trail_long_executes", Decided(5, 990, nan, nan), 1, false, 1000, 990, false);
        AitbDecision warming = Decided(0, nan, nan, nan);
        warming.WarmingUp = true;
        Rule("hold_is_never_refused", warming, 1, false, 1000, 990, false);
        Check("safe_stop_tightens_long", AitbGuard.SafeStop(1, 990, 995, 1000) == 995, "");
        Check("safe_stop_never_loosens_long", AitbGuard.SafeStop(1, 990, 985, 1000) == 990, "");
        Check("safe_stop_ignores_stop_through_close_long", AitbGuard.SafeStop(1, 990, 1000.25, 1000) == 990, "");
        Check("safe_stop_tightens_short", AitbGuard.SafeStop(-1, 1010, 1005, 1000) == 1005, "");
        Check("safe_stop_never_loosens_short", AitbGuard.SafeStop(-1, 1010, 1015, 1000) == 1010, "");
        return 0;
    }

    // ---------------------------------------------------------------- trail

    private static int RunTrail()
    {
        string line;
        while ((line = Console.In.ReadLine()) != null)
        {
            string[] f = line.Split(' ');
            if (f.Length != 6) continue;
            double result = AitbTrail.NextStop(int.Parse(f[0], CultureInfo.InvariantCulture),
                double.Parse(f[1], CultureInfo.InvariantCulture), double.Parse(f[2], CultureInfo.InvariantCulture),
                double.Parse(f[3], CultureInfo.InvariantCulture), double.Parse(f[4], CultureInfo.InvariantCulture),
                double.Parse(f[5], CultureInfo.InvariantCulture));
            Console.Out.WriteLine(result.ToString("R", CultureInfo.InvariantCulture));
        }
        return 0;
    }
}
