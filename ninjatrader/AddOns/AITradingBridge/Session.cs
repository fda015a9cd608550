// Session.cs -- Lazy Pirate retries, resynchronisation after a daemon restart, and the
// background worker that keeps NinjaTrader's threads off the network.
// Part of the ai-trading-bridge NinjaScript add-on (see ninjatrader/README.md).

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using System.Diagnostics;
using System.Threading;

namespace NinjaTrader.NinjaScript.AddOns.AITradingBridgeClient
{
    public sealed class AitbSessionOptions
    {
        public string Endpoint = "tcp://127.0.0.1:5555";
        public string Client = "nt8";
        public string Instrument = "";
        public int TimeoutMs = 2000;
        public int Tries = 3;
        public int HistoryChunk = 500;     // bars per history message
        public int HistoryKeep = 1000;     // bars kept to rebuild a restarted daemon
        public long MaxMessageBytes = 16L * 1024 * 1024;
        public long FirstSeq = 0;          // 0: derived from the clock (see AitbSession)
        public int BudgetMs = 0;           // all tries of one request, resyncs included; 0: TimeoutMs x Tries
        public AitbClientInfo Info;        // v1.1 hello fields (null: a v1 hello)
    }

    /// <summary>
    /// The protocol state machine. Not thread-safe: one thread (AitbWorker's) drives it.
    ///
    /// Lazy Pirate: each request is tried up to Tries times, each try waiting at most
    /// TimeoutMs for the reply on a fresh connection; the retried request is the same
    /// text with the same seq, so a daemon that already answered it replies from its
    /// cache without running the model again. After all tries the caller acts as HOLD.
    /// All tries of one request, the resyncs between them included, share one budget
    /// (BudgetMs, by default TimeoutMs x Tries): the documented worst case is the real one.
    ///
    /// Resync: after any failed try the next try first sends a ping. A daemon whose
    /// uptime_s is shorter than the time since its last reply to us has restarted and
    /// lost our state, so we send hello and the whole history buffer (oldest first)
    /// before repeating the request. A daemon that did not restart only gets the bars it
    /// may have missed (history after the newest bar it acknowledged; overlap is skipped
    /// by the daemon anyway). hello/history/ping carry no seq, so none of this disturbs
    /// the daemon's retry cache.
    /// </summary>
    public sealed class AitbSession : IDisposable
    {
        private const double RestartToleranceSeconds = 0.05;
        private readonly AitbSessionOptions options;
        private readonly Action<string> log;
        private readonly AitbReqTransport transport;
        private readonly List<AitbBar> history = new List<AitbBar>();
        private long nextSeq;
        private bool everSynced;
        private bool needSync = true;
        private bool forceHello;
        private bool daemonReady;
        private long lastReplyTimestamp;
        private DateTime? lastAcknowledgedBar;
        private string modelSha;
        private volatile AitbModelInfo model;  // replaced whole, never mutated

        public AitbSession(AitbSessionOptions options, Action<string> log)
        {
            if (options.Tries < 1) throw new ArgumentException("tries must be >= 1");
            if (options.TimeoutMs < 1) throw new ArgumentException("timeout must be >= 1 ms");
            this.options = options;
            this.log = log ?? delegate(string s) { };
            transport = new AitbReqTransport(options.Endpoint, options.MaxMessageBytes);
            // Seq starts from the clock (ms since 2020) so a restarted strategy never reuses
            // the seq of its previous run and receives that run's cached reply.
            nextSeq = options.FirstSeq > 0 ? options.FirstSeq
                : (long)(DateTime.UtcNow - new DateTime(2020, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalMilliseconds;
        }

        public int WarmupBars { get; private set; }

        /// <summary>The last hello reply (null before one arrived); safe to read from any thread.</summary>
        public AitbModelInfo Model { get { return model; } }

        private int BudgetMs
        {
            get { return options.BudgetMs > 0 ? options.BudgetMs : (int)Math.Min(int.MaxValue, (long)options.TimeoutMs * options.Tries); }
        }

        /// <summary>The timeout of the next try: TimeoutMs, or what is left of the budget.</summary>
        private int TryMs(AitbDeadline budget)
        {
            return Math.Min(options.TimeoutMs, budget.RemainingMs);
        }
        public string ModelVersion { get; private set; }
        public bool DaemonReady { get { return daemonReady; } }
        public long LastSeq { get { return nextSeq - 1; } }
        public int HelloCount { get; private set; }
        public int HistoryMessages { get; private set; }
        public int ConnectionsOpened { get { return transport.ConnectionsOpened; } }
        public int BufferedBars { get { return history.Count; } }

        /// <summary>The text of the last bar request (diagnostics and tests).</summary>
        public string LastRequest { get; private set; }

        /// <summary>Sends hello and the backfill. False when the daemon could not be reached
        /// (the next request then retries the resync).</summary>
        public bool Start(IList<AitbBar> bars)
        {
            foreach (AitbBar bar in bars) Remember(bar);
            for (int attempt = 1; attempt <= options.Tries; attempt++)
            {
                string failure;
                bool resynced;
                // Start is not a decision: each step of it gets a whole TimeoutMs.
                if (Sync(new AitbDeadline(int.MaxValue / 2), out failure, out resynced)) return true;
                log(string.Format(CultureInfo.InvariantCulture, "connect try {0}/{1} failed: {2}", attempt, options.Tries, failure));
            }
            log("daemon unreachable at " + options.Endpoint + "; will retry with the next bar");
            return false;
        }

        /// <summary>Asks for a decision on a closed bar. Never throws for network reasons.</summary>
        public AitbDecision SendBar(AitbBar bar, AitbPosition position)
        {
            AitbDecision decision = new AitbDecision();
            decision.BarTime = bar.Time;
            string problem = bar.Problem() ?? position.Problem();
            if (problem != null)
            {
                decision.Outcome = AitbDecision.OutcomeInvalid;
                decision.Message = "not sent: " + problem;
                return decision;
            }
            long seq = nextSeq++;
            decision.Seq = seq;
            string request = AitbProtocol.Bar(options.Client, options.Instrument, seq, bar, position);
            LastRequest = request;
            Stopwatch watch = Stopwatch.StartNew();
            Dictionary<string, object> reply = Exchange(request, decision);
            decision.LatencyMs = watch.Elapsed.TotalMilliseconds;
            Remember(bar);
            if (reply == null) return decision;
            Interpret(reply, decision);
            if (decision.IsOk)
            {
                lastAcknowledgedBar = bar.Time;
                if (decision.WarmingUp && daemonReady)
                {
                    // The daemon forgot our history without us noticing a restart: rebuild it.
                    log("daemon reports warming up although it had our history; resending hello and history");
                    needSync = true;
                    forceHello = true;
                }
            }
            return decision;
        }

        /// <summary>Reports a fill or position change between bars (Outcome ok when delivered).</summary>
        public AitbDecision SendPosition(AitbPosition position)
        {
            return SendPosition(position, double.NaN);
        }

        /// <summary>As SendPosition, with the session's realized P&amp;L (v1.1; NaN: left out).</summary>
        public AitbDecision SendPosition(AitbPosition position, double realizedPnl)
        {
            AitbDecision result = new AitbDecision();
            string problem = position.Problem();
            if (problem != null)
            {
                result.Outcome = AitbDecision.OutcomeInvalid;
                result.Message = "not sent: " + problem;
                return result;
            }
            result.Seq = nextSeq++;
            string account = options.Info != null ? options.Info.Account : null;
            Dictionary<string, object> reply = Exchange(
                AitbProtocol.Position(options.Client, options.Instrument, result.Seq, position, realizedPnl, account), result);
            if (reply == null) return result;
            if (AitbJson.Bool(reply, "ok", false))
            {
                result.Outcome = AitbDecision.OutcomeOk;
            }
            else
            {
                result.Outcome = AitbDecision.OutcomeError;
                result.Message = DescribeError(reply);
            }
            return result;
        }

        /// <summary>The request with Lazy Pirate retries; null after the last failed try.</summary>
        private Dictionary<string, object> Exchange(string request, AitbDecision decision)
        {
            AitbDeadline budget = new AitbDeadline(BudgetMs);
            for (int attempt = 1; attempt <= options.Tries && TryMs(budget) > 0; attempt++)
            {
                decision.Attempts = attempt;
                string failure;
                if (needSync)
                {
                    bool resynced;
                    if (!Sync(budget, out failure, out resynced))
                    {
                        NoteFailure(decision, attempt, failure);
                        continue;
                    }
                    decision.Resynced |= resynced;
                }
                if (TryMs(budget) <= 0)
                {
                    NoteFailure(decision, attempt, "the retry budget was spent on resynchronising");
                    break;
                }
                Dictionary<string, object> reply = ExchangeOnce(request, TryMs(budget), out failure);
                if (reply != null)
                {
                    decision.RawReply = lastRawReply;
                    return reply;
                }
                NoteFailure(decision, attempt, failure);
            }
            decision.Outcome = AitbDecision.OutcomeUnreachable;
            return null;
        }

        private void NoteFailure(AitbDecision decision, int attempt, string failure)
        {
            needSync = true;
            decision.Message = failure;
            log(string.Format(CultureInfo.InvariantCulture, "seq {0}: try {1}/{2} failed: {3}", decision.Seq, attempt, options.Tries, failure));
        }

        private string lastRawReply;

        /// <summary>One try: a JSON object back, or null with the reason (connection closed).</summary>
        private Dictionary<string, object> ExchangeOnce(string request, int timeoutMs, out string failure)
        {
            string raw;
            if (timeoutMs <= 0)
            {
                failure = "no time left in the retry budget";
                return null;
            }
            if (!transport.TryExchange(request, timeoutMs, out raw, out failure)) return null;
            Dictionary<string, object> reply = null;
            try { reply = AitbJsonReader.Parse(raw) as Dictionary<string, object>; }
            catch (AitbJsonException ex) { failure = "garbage reply (" + ex.Message + ")"; }
            if (reply == null)
            {
                if (failure == null) failure = "garbage reply (not a JSON object)";
                transport.Close();
                return null;
            }
            lastReplyTimestamp = Stopwatch.GetTimestamp();
            lastRawReply = raw;
            return reply;
        }

        /// <summary>ping, then hello + full history after a restart, or only missed bars.</summary>
        private bool Sync(AitbDeadline budget, out string failure, out bool resynced)
        {
            resynced = false;
            bool restarted = !everSynced || forceHello;
            if (!restarted)
            {
                long before = lastReplyTimestamp;
                Dictionary<string, object> pong = ExchangeOnce(AitbProtocol.Ping(), TryMs(budget), out failure);
                if (pong == null) return false;
                double silentSeconds = (double)(lastReplyTimestamp - before) / Stopwatch.Frequency;
                double uptime = AitbJson.Num(pong, "uptime_s");
                restarted = double.IsNaN(uptime) || uptime + RestartToleranceSeconds < silentSeconds;
                if (restarted)
                    log(string.Format(CultureInfo.InvariantCulture, "daemon restarted (up {0:0.0} s, silent for {1:0.0} s); resending hello and {2} bars of history", uptime, silentSeconds, history.Count));
            }
            if (restarted)
            {
                if (!SendHello(budget, out failure)) return false;
                resynced = true;
            }
            if (!SendHistory(budget, restarted ? (DateTime?)null : lastAcknowledgedBar, out failure)) return false;
            everSynced = true;
            needSync = false;
            forceHello = false;
            failure = null;
            return true;
        }

        private bool SendHello(AitbDeadline budget, out string failure)
        {
            Dictionary<string, object> reply = ExchangeOnce(
                AitbProtocol.Hello(options.Client, options.Instrument, options.Info), TryMs(budget), out failure);
            if (reply == null) return false;
            HelloCount++;
            if (!AitbJson.Bool(reply, "ok", false))
            {
                log("hello refused: " + DescribeError(reply));
                AitbModelInfo refused = new AitbModelInfo();
                refused.Refusal = DescribeError(reply);
                model = refused;
                return true; // a protocol answer, not a network failure: history may still work
            }
            double warmup = AitbJson.Num(reply, "warmup_bars");
            if (!double.IsNaN(warmup)) WarmupBars = (int)warmup;
            Dictionary<string, object> modelObject = AitbJson.Obj(reply, "model");
            string sha = AitbJson.Str(modelObject, "sha256");
            ModelVersion = AitbJson.Str(modelObject, "version");
            if (modelSha != null && sha != null && sha != modelSha)
                log("the daemon now serves a different model: " + ModelVersion + " (" + sha + ")");
            modelSha = sha;
            daemonReady = false;
            model = ReadModelInfo(reply, WarmupBars);
            log(string.Format(CultureInfo.InvariantCulture, "hello: model {0}, warmup {1} bars", ModelVersion, WarmupBars));
            return true;
        }

        private static AitbModelInfo ReadModelInfo(Dictionary<string, object> reply, int warmupBars)
        {
            Dictionary<string, object> m = AitbJson.Obj(reply, "model");
            AitbModelInfo info = new AitbModelInfo();
            info.Version = AitbJson.Str(m, "version");
            info.Sha256 = AitbJson.Str(m, "sha256");
            info.Instrument = AitbJson.Str(m, "instrument");
            Dictionary<string, object> period = AitbJson.Obj(m, "bar_period");
            info.BarPeriodType = AitbJson.Str(period, "type");
            double value = AitbJson.Num(period, "value");
            info.BarPeriodValue = double.IsNaN(value) ? 0 : (int)value;
            info.TrainedTickSize = AitbJson.Num(m, "trained_tick_size");
            info.RiskState = AitbJson.Str(AitbJson.Obj(reply, "risk"), "state");
            info.WarmupBars = warmupBars;
            return info;
        }

        private bool SendHistory(AitbDeadline budget, DateTime? after, out string failure)
        {
            failure = null;
            int start = 0;
            if (after.HasValue)
                while (start < history.Count && history[start].Time <= after.Value) start++;
            int chunk = Math.Max(1, options.HistoryChunk);
            for (int i = start; i < history.Count; i += chunk)
            {
                int count = Math.Min(chunk, history.Count - i);
                Dictionary<string, object> reply = ExchangeOnce(
                    AitbProtocol.History(options.Client, options.Instrument, history, i, count), TryMs(budget), out failure);
                if (reply == null) return false;
                HistoryMessages++;
                if (!AitbJson.Bool(reply, "ok", false))
                {
                    log("history refused: " + DescribeError(reply));
                    continue;
                }
                daemonReady = AitbJson.Bool(reply, "ready", daemonReady);
                lastAcknowledgedBar = history[i + count - 1].Time;
            }
            return true;
        }

        private void Remember(AitbBar bar)
        {
            if (bar.Problem() != null) return;
            if (history.Count > 0 && bar.Time <= history[history.Count - 1].Time) return;
            history.Add(bar);
            int excess = history.Count - Math.Max(1, options.HistoryKeep);
            if (excess > 0) history.RemoveRange(0, excess);
        }

        private static string DescribeError(Dictionary<string, object> reply)
        {
            Dictionary<string, object> error = AitbJson.Obj(reply, "error");
            return (AitbJson.Str(error, "code") ?? "?") + ": " + (AitbJson.Str(error, "message") ?? "(no message)");
        }

        /// <summary>Checks a bar reply and copies what NinjaTrader needs into the decision.</summary>
        private static void Interpret(Dictionary<string, object> reply, AitbDecision d)
        {
            double echoed = AitbJson.Num(reply, "seq");
            if (!AitbJson.Bool(reply, "ok", false))
            {
                Dictionary<string, object> error = AitbJson.Obj(reply, "error");
                d.Outcome = AitbDecision.OutcomeError;
                d.ErrorCode = AitbJson.Str(error, "code");
                d.Message = AitbJson.Str(error, "message");
                return;
            }
            d.Outcome = AitbDecision.OutcomeInvalid;
            if (echoed != (double)d.Seq) { d.Message = "reply is for another request (seq mismatch)"; return; }
            double action = AitbJson.Num(reply, "action");
            if (!(action >= 0 && action < AitbProtocol.ActionNames.Length && action == Math.Floor(action)))
            {
                d.Message = "action missing or out of range";
                return;
            }
            int a = (int)action;
            List<object> mask = AitbJson.Arr(reply, "mask");
            if (mask == null || mask.Count != AitbProtocol.ActionNames.Length) { d.Message = "mask missing or not 6 values"; return; }
            int[] maskValues = new int[mask.Count];
            for (int i = 0; i < mask.Count; i++)
            {
                if (!(mask[i] is double) || ((double)mask[i] != 0 && (double)mask[i] != 1)) { d.Message = "mask values must be 0 or 1"; return; }
                maskValues[i] = (int)(double)mask[i];
            }
            d.Mask = maskValues;
            if (maskValues[a] != 1) { d.Message = "action " + AitbProtocol.ActionNames[a] + " is not valid under its own mask"; return; }
            string name = AitbJson.Str(reply, "name");
            if (name != null && name != AitbProtocol.ActionNames[a]) { d.Message = "action name does not match its id"; return; }
            d.WarmingUp = AitbJson.Bool(reply, "warming_up", false);
            Dictionary<string, object> risk = AitbJson.Obj(reply, "risk");
            if (risk != null)
            {
                d.RiskRule = AitbJson.Str(risk, "rule") ?? "risk";
                d.RiskDetail = AitbJson.Str(risk, "detail") ?? "";
                double modelAction = AitbJson.Num(risk, "model_action");
                d.RiskModelAction = modelAction >= 0 && modelAction < AitbProtocol.ActionNames.Length ? (int)modelAction : -1;
            }
            d.ModelVersion = AitbJson.Str(reply, "model_version");
            Dictionary<string, object> orders = AitbJson.Obj(reply, "orders");
            d.StopPrice = AitbJson.Num(orders, "stop_price");
            d.TargetPrice = AitbJson.Num(orders, "target_price");
            d.TrailPoints = AitbJson.Num(orders, "trail_points");
            bool pricesOk = true;
            if (a == AitbProtocol.Buy || a == AitbProtocol.Sell)
                pricesOk = d.StopPrice > 0 && d.TargetPrice > 0;
            else if (a == AitbProtocol.MoveToBreakeven || a == AitbProtocol.DisableTrail)
                pricesOk = d.StopPrice > 0;
            else if (a == AitbProtocol.EnableTrail)
                pricesOk = d.TrailPoints > 0;
            if (!pricesOk) { d.Message = AitbProtocol.ActionNames[a] + " without the prices it needs in orders"; return; }
            d.Outcome = AitbDecision.OutcomeOk;
            d.Action = a;
            d.Name = AitbProtocol.ActionNames[a];
        }

        public void Dispose()
        {
            transport.Dispose();
        }
    }

    public sealed class AitbJob
    {
        public const int KindStart = 0, KindBar = 1, KindPosition = 2;
        public int Kind;
        public AitbBar Bar;
        public AitbPosition Position;
        public List<AitbBar> History;
        public int BarIndex;           // NinjaTrader's CurrentBar when the bar closed
        public long ClosedAt;          // Stopwatch timestamp when the bar closed (decision age)
        public double RealizedPnl = double.NaN; // position jobs: the session's realized P&L
        public AitbDecision Decision;  // filled in for bar jobs

        /// <summary>Milliseconds since the bar closed (since it was handed to the worker).</summary>
        public double AgeMs
        {
            get { return (Stopwatch.GetTimestamp() - ClosedAt) * 1000.0 / Stopwatch.Frequency; }
        }
    }

    /// <summary>
    /// Owns the session on a background thread. Enqueue* returns at once; bar decisions
    /// come back through the callback on the worker thread (the strategy marshals them
    /// onto its own thread with TriggerCustomEvent). Jobs run strictly in order.
    /// </summary>
    public sealed class AitbWorker : IDisposable
    {
        public const int MaxQueued = 256;
        private readonly AitbSession session;
        private readonly Action<AitbJob> onDecision;
        private readonly Action<string> log;
        private readonly Queue<AitbJob> queue = new Queue<AitbJob>();
        private readonly object gate = new object();
        private readonly Thread thread;
        private bool stopping;

        public AitbWorker(AitbSession session, Action<AitbJob> onDecision, Action<string> log)
        {
            this.session = session;
            this.onDecision = onDecision;
            this.log = log ?? delegate(string s) { };
            thread = new Thread(Run);
            thread.IsBackground = true;
            thread.Name = "AITradingBridge worker";
            thread.Start();
        }

        public int Pending
        {
            get { lock (gate) return queue.Count; }
        }

        public void EnqueueStart(List<AitbBar> history)
        {
            AitbJob job = new AitbJob();
            job.Kind = AitbJob.KindStart;
            job.History = history;
            Enqueue(job);
        }

        public void EnqueueBar(AitbBar bar, AitbPosition position, int barIndex)
        {
            AitbJob job = new AitbJob();
            job.Kind = AitbJob.KindBar;
            job.Bar = bar;
            job.Position = position;
            job.BarIndex = barIndex;
            job.ClosedAt = Stopwatch.GetTimestamp();
            Enqueue(job);
        }

        public void EnqueuePosition(AitbPosition position)
        {
            EnqueuePosition(position, double.NaN);
        }

        public void EnqueuePosition(AitbPosition position, double realizedPnl)
        {
            AitbJob job = new AitbJob();
            job.Kind = AitbJob.KindPosition;
            job.Position = position;
            job.RealizedPnl = realizedPnl;
            Enqueue(job);
        }

        private void Enqueue(AitbJob job)
        {
            lock (gate)
            {
                if (stopping) return;
                if (queue.Count >= MaxQueued)
                {
                    queue.Dequeue();
                    log("request queue full (daemon too slow); dropped the oldest request");
                }
                queue.Enqueue(job);
                Monitor.Pulse(gate);
            }
        }

        private void Run()
        {
            while (true)
            {
                AitbJob job;
                lock (gate)
                {
                    while (queue.Count == 0 && !stopping) Monitor.Wait(gate);
                    if (stopping) return;
                    job = queue.Dequeue();
                }
                try
                {
                    Process(job);
                }
                catch (Exception ex)
                {
                    log("worker error: " + ex.Message);
                }
            }
        }

        private void Process(AitbJob job)
        {
            if (job.Kind == AitbJob.KindStart)
            {
                session.Start(job.History);
            }
            else if (job.Kind == AitbJob.KindBar)
            {
                job.Decision = session.SendBar(job.Bar, job.Position);
                if (onDecision != null) onDecision(job);
            }
            else
            {
                AitbDecision result = session.SendPosition(job.Position, job.RealizedPnl);
                if (!result.IsOk) log("position update not delivered (" + result.Outcome + "): " + result.Message);
            }
        }

        /// <summary>Stops without waiting longer than <paramref name="waitMs"/>; closes the socket.</summary>
        public void Stop(int waitMs)
        {
            lock (gate)
            {
                stopping = true;
                queue.Clear();
                Monitor.PulseAll(gate);
            }
            thread.Join(waitMs);
            // Closing the socket also breaks a wait still in progress; the thread then exits.
            session.Dispose();
        }

        public void Dispose()
        {
            Stop(0);
        }
    }
}
