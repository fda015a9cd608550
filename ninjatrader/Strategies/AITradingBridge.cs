// AITradingBridge.cs -- NinjaTrader 8 strategy that trades the decisions of an
// ai-trading-bridge daemon (`ai-trading-bridge serve`).
//
// Only the strategy class lives here (namespace NinjaTrader.NinjaScript.Strategies, as
// NinjaTrader requires). Its helpers -- JSON, the ZeroMQ REQ client (ZMTP 3.0 on
// System.Net.Sockets, no DLL), the protocol, the session and worker thread, the trading
// rules and the decision log -- are in bin\Custom\AddOns\AITradingBridge\ under the
// namespace NinjaTrader.NinjaScript.AddOns.AITradingBridgeClient, so a "Save As" copy of
// this file compiles next to the original. C# 5, as NinjaTrader's compiler accepts.
//
// Install with Tools > Import > NinjaScript Add-On (ninjatrader/README.md); the protocol
// is docs/protocol.md in the ai-trading-bridge repository.

#region Using declarations
using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.IO;
using System.Xml.Serialization;
using NinjaTrader.Cbi;
using NinjaTrader.Data;
using NinjaTrader.NinjaScript;
using NinjaTrader.NinjaScript.AddOns.AITradingBridgeClient;
using NinjaTrader.NinjaScript.DrawingTools;
#endregion

namespace NinjaTrader.NinjaScript.Strategies
{
    /// <summary>
    /// Sends each closed bar and the position to the ai-trading-bridge daemon and executes
    /// its decision. Orders: SetStopLoss/SetProfitTarget in CalculationMode.Price, set
    /// before the market entry, so NinjaTrader submits the OCO bracket the moment the
    /// entry fills and keeps it working whatever happens to the daemon.
    ///
    /// Threads: NinjaTrader calls OnBarUpdate, OnOrderUpdate, OnExecutionUpdate and
    /// OnPositionUpdate on its own threads, sometimes inside EnterLong or in the middle of
    /// OnBarUpdate (Help Guide, "OnExecutionUpdate()"); decisions come back from the worker
    /// through TriggerCustomEvent. Every read or write of order state holds orderGate.
    /// </summary>
    public class AITradingBridge : Strategy
    {
        private const string LongSignal = "AITB Long";
        private const string ShortSignal = "AITB Short";
        private const string AdoptedStopName = "AITB Adopted stop";
        private const string AdoptedTargetName = "AITB Adopted target";
        private const string RiskTag = "AITB risk";

        private readonly object orderGate = new object();
        private AitbWorker worker;
        private AitbSession session;
        private string clientId;
        private AitbDecisionLog decisionLog;
        private AitbLimits limits;
        private TimeZoneInfo displayZone;
        private string refusal;            // set in Configure/DataLoaded: never trade, say why
        private bool waitingForFlatAccount;
        private bool closedOutside;       // strategy in a position, account flat: closed by hand
        private double sessionStartPnl;

        // Order state (under orderGate).
        private string activeSignal;
        private bool adopted;              // managing an adopted account position
        private Order adoptedStopOrder;
        private Order adoptedTargetOrder;
        private double stopPrice = double.NaN;
        private double targetPrice = double.NaN;
        private bool trailing;
        private double trailPoints;
        private double bestPrice;
        private DateTime? entryTime;
        private bool entryTimeProvisional;
        private bool entryPending;
        private int entryPendingBar;
        private bool outage;

        protected override void OnStateChange()
        {
            if (State == State.SetDefaults)
            {
                Description = @"Trades the decisions of an ai-trading-bridge daemon over ZeroMQ (no DLL needed).";
                Name = "AITradingBridge";
                Calculate = Calculate.OnBarClose;
                EntriesPerDirection = 1;
                EntryHandling = EntryHandling.AllEntries;
                IsExitOnSessionCloseStrategy = true;
                ExitOnSessionCloseSeconds = 30;
                StartBehavior = StartBehavior.WaitUntilFlat;
                // Required before NinjaTrader honours StartBehavior.AdoptAccountPosition (Help
                // Guide, "StartBehavior"); the strategy handles an adopted position itself
                // (AdoptPosition) and only adopts when the trader chooses Adopt.
                IsAdoptAccountPositionAware = true;
                RealtimeErrorHandling = RealtimeErrorHandling.StopCancelClose;
                // Not the default Recalculate: this strategy never trades on historical bars,
                // so a recalculation after a connection loss would rebuild a flat position
                // and lose track of a real one. KeepRunning leaves the position and its
                // working stop and target as they are and carries on when data returns.
                ConnectionLossHandling = ConnectionLossHandling.KeepRunning;
                StopTargetHandling = StopTargetHandling.PerEntryExecution;
                BarsRequiredToTrade = 0;
                TraceOrders = false;
                IsInstantiatedOnEachOptimizationIteration = true;

                Endpoint = "tcp://127.0.0.1:5555";
                TimeoutMs = 2000;
                Retries = 3;
                ClientId = "";
                Quantity = 1;
                LogOnly = false;
                HistoryBars = 1000;
                WriteDecisionLog = true;
                AccountPositionAtStart = AitbAccountPositionAtStart.RefuseToTrade;
                AdoptedStopTicks = 40;
                AdoptedTargetTicks = 80;
                MaxDecisionAgeMs = 5000;
                StopMarginTicks = 1;
                MaxQuantity = 1;
                MaxStopTicks = 400;
                ExpectedModelSha256 = "";
                ExpectedModelVersion = "";
            }
            else if (State == State.Configure)
            {
                EnforceSettings();
            }
            else if (State == State.DataLoaded)
            {
                string wanted = string.IsNullOrEmpty(ClientId)
                    ? string.Format(CultureInfo.InvariantCulture, "nt8-{0}-{1}-{2}{3}", Account != null ? Account.Name : "account",
                        Instrument.MasterInstrument.Name, BarsPeriod.Value, BarsPeriod.BarsPeriodType)
                    : ClientId;
                clientId = AitbClientIds.Claim(SafeName(wanted));
                if (clientId != SafeName(wanted))
                    Say("client id " + wanted + " is used by another running instance; this one is " + clientId);
                if (WriteDecisionLog)
                    decisionLog = new AitbDecisionLog(Path.Combine(NinjaTrader.Core.Globals.UserDataDir, "AITradingBridge"),
                        "decisions-" + clientId, Say);
                displayZone = NinjaTrader.Core.Globals.GeneralOptions.TimeZoneInfo ?? TimeZoneInfo.Local;
                limits = new AitbLimits();
                limits.MaxQuantity = MaxQuantity;
                limits.MaxStopTicks = MaxStopTicks;
                limits.ExpectedModelSha256 = (ExpectedModelSha256 ?? "").Trim();
                limits.ExpectedModelVersion = (ExpectedModelVersion ?? "").Trim();
            }
            else if (State == State.Realtime)
            {
                lock (orderGate)
                {
                    CheckAccountPosition();
                    StartBridge();
                }
            }
            else if (State == State.Terminated)
            {
                if (worker != null)
                {
                    worker.Stop(200);
                    worker = null;
                }
                AitbClientIds.Release(clientId);
                clientId = null;
            }
        }

        /// <summary>State.Configure: the settings this strategy depends on, whatever the strategy
        /// dialog says. Fixed with a message where a safe value exists; refused otherwise.</summary>
        private void EnforceSettings()
        {
            if (Calculate != Calculate.OnBarClose)
            {
                Say("Calculate was " + Calculate + "; the model decides on closed bars only, so it is set to OnBarClose");
                Calculate = Calculate.OnBarClose;
            }
            if (EntriesPerDirection != 1 || EntryHandling != EntryHandling.AllEntries)
            {
                Say("EntriesPerDirection/EntryHandling set to 1/AllEntries: the model holds one position at a time");
                EntriesPerDirection = 1;
                EntryHandling = EntryHandling.AllEntries;
            }
            if (ConnectionLossHandling == ConnectionLossHandling.Recalculate)
            {
                Say("ConnectionLossHandling was Recalculate; the strategy never trades on history, so a recalculation would " +
                    "rebuild a flat position and lose track of a real one: set to KeepRunning");
                ConnectionLossHandling = ConnectionLossHandling.KeepRunning;
            }
            if (StopTargetHandling != StopTargetHandling.PerEntryExecution)
            {
                Say("StopTargetHandling set to PerEntryExecution");
                StopTargetHandling = StopTargetHandling.PerEntryExecution;
            }
            if (!IsExitOnSessionCloseStrategy)
            {
                Say("IsExitOnSessionCloseStrategy set to true: the model was trained flattening at the session close");
                IsExitOnSessionCloseStrategy = true;
            }
            if (AccountPositionAtStart == AitbAccountPositionAtStart.Adopt)
                StartBehavior = StartBehavior.AdoptAccountPosition;
            else if (StartBehavior != StartBehavior.ImmediatelySubmitSynchronizeAccount && StartBehavior != StartBehavior.WaitUntilFlatSynchronizeAccount)
                StartBehavior = StartBehavior.WaitUntilFlat;
            if (RealtimeErrorHandling == RealtimeErrorHandling.IgnoreAllErrors)
                Refuse("RealtimeErrorHandling is IgnoreAllErrors: a rejected stop would leave the position unprotected; choose StopCancelClose");
            if (Quantity > MaxQuantity)
                Refuse(string.Format(CultureInfo.InvariantCulture, "Quantity {0} is above Max quantity {1}; raise Max quantity deliberately if you mean it", Quantity, MaxQuantity));
            try
            {
                string host;
                int port;
                AitbReqTransport.ParseEndpoint(Endpoint, out host, out port);
            }
            catch (ArgumentException ex)
            {
                Refuse(ex.Message);
            }
        }

        private void Refuse(string why)
        {
            if (refusal == null) refusal = why;
            Say("NOT TRADING: " + why);
            Log("AITradingBridge NOT TRADING: " + why, LogLevel.Error);
        }

        /// <summary>Help Guide, "Syncing Account Positions": the account may hold a position the
        /// strategy did not open (a crash, a reboot, a re-enable). Never a second one.</summary>
        private void CheckAccountPosition()
        {
            Position account = PositionAccount;
            if (account == null || account.MarketPosition == MarketPosition.Flat) return;
            string held = string.Format(CultureInfo.InvariantCulture, "account {0} holds {1} {2} {3} @ {4}",
                Account.Name, account.MarketPosition, account.Quantity, Instrument.FullName, account.AveragePrice);
            if (Position.MarketPosition != MarketPosition.Flat && AccountPositionAtStart == AitbAccountPositionAtStart.Adopt)
            {
                AdoptPosition(held);
                return;
            }
            waitingForFlatAccount = true;
            Say(held + "; no orders until the account is flat (flatten it, or set 'Account position at start' to Adopt)");
            Log("AITradingBridge: " + held + "; not trading until the account is flat.", LogLevel.Warning);
        }

        /// <summary>The adopted position gets a new stop and target; the old ones may be gone.</summary>
        private void AdoptPosition(string held)
        {
            int side = SideOf(Position.MarketPosition);
            double tick = Instrument.MasterInstrument.TickSize;
            double average = Position.AveragePrice;
            double stop = Instrument.MasterInstrument.RoundToTickSize(average - side * AdoptedStopTicks * tick);
            if (AitbStops.Problem(side, stop, GetCurrentBid(), GetCurrentAsk(), tick, StopMarginTicks) != null)
            {
                int margin = Math.Max(1, StopMarginTicks); // at the bid/ask is at the market: rejected
                stop = Instrument.MasterInstrument.RoundToTickSize(side > 0 ? GetCurrentBid() - margin * tick : GetCurrentAsk() + margin * tick);
            }
            double target = Instrument.MasterInstrument.RoundToTickSize(average + side * AdoptedTargetTicks * tick);
            adopted = true;
            activeSignal = null;
            stopPrice = stop;
            targetPrice = target;
            entryTime = AitbTimes.ToUtc(Time[0], displayZone);
            entryTimeProvisional = false;
            SubmitAdoptedOrders();
            Say(held + "; adopted: stop " + Format(stop) + ", target " + Format(target));
        }

        private void SubmitAdoptedOrders()
        {
            int quantity = Position.Quantity;
            if (Position.MarketPosition == MarketPosition.Long)
            {
                adoptedStopOrder = ExitLongStopMarket(0, true, quantity, stopPrice, AdoptedStopName, "");
                adoptedTargetOrder = ExitLongLimit(0, true, quantity, targetPrice, AdoptedTargetName, "");
            }
            else if (Position.MarketPosition == MarketPosition.Short)
            {
                adoptedStopOrder = ExitShortStopMarket(0, true, quantity, stopPrice, AdoptedStopName, "");
                adoptedTargetOrder = ExitShortLimit(0, true, quantity, targetPrice, AdoptedTargetName, "");
            }
        }

        private void StartBridge()
        {
            AitbSessionOptions options = new AitbSessionOptions();
            options.Endpoint = Endpoint;
            options.Client = clientId;
            options.Instrument = Instrument.FullName;
            options.TimeoutMs = TimeoutMs;
            options.Tries = Retries;
            options.HistoryKeep = Math.Max(HistoryBars, 1);
            options.Info = ClientInfo();
            try
            {
                session = new AitbSession(options, Say);
            }
            catch (ArgumentException ex)
            {
                Refuse(ex.Message);
                return;
            }
            List<AitbBar> history = new List<AitbBar>();
            for (int i = Math.Max(0, CurrentBar - HistoryBars + 1); i <= CurrentBar; i++)
                history.Add(new AitbBar(AitbTimes.ToUtc(Bars.GetTime(i), displayZone), Bars.GetOpen(i), Bars.GetHigh(i),
                    Bars.GetLow(i), Bars.GetClose(i), Bars.GetVolume(i)));
            sessionStartPnl = SystemPerformance.RealTimeTrades.TradesPerformance.Currency.CumProfit;
            worker = new AitbWorker(session, OnWorkerDecision, Say);
            worker.EnqueueStart(history);
            Say(string.Format(CultureInfo.InvariantCulture, "client {0} -> {1}; sending {2} bars of history (times in UTC from {3}){4}{5}",
                clientId, Endpoint, history.Count, displayZone.Id, LogOnly ? "; LogOnly: no orders will be placed" : "",
                refusal != null ? "; NOT TRADING: " + refusal : ""));
        }

        private AitbClientInfo ClientInfo()
        {
            AitbClientInfo info = new AitbClientInfo();
            info.TickSize = Instrument.MasterInstrument.TickSize;
            info.PointValue = Instrument.MasterInstrument.PointValue;
            info.Currency = IsoCurrency(Instrument.MasterInstrument.Currency);
            info.BarPeriodType = PeriodName(BarsPeriod.BarsPeriodType);
            info.BarPeriodValue = BarsPeriod.Value;
            info.Account = Account != null ? Account.Name : null;
            return info;
        }

        private static string IsoCurrency(Currency currency)
        {
            switch (currency)
            {
                case Currency.UsDollar: return "USD";
                case Currency.Euro: return "EUR";
                case Currency.BritishPound: return "GBP";
                case Currency.JapaneseYen: return "JPY";
                case Currency.CanadianDollar: return "CAD";
                case Currency.AustralianDollar: return "AUD";
                case Currency.SwissFranc: return "CHF";
                case Currency.HongKongDollar: return "HKD";
            }
            return currency.ToString();
        }

        /// <summary>BarsPeriodType in the protocol's words ("minute", "second", "day", ...).</summary>
        private static string PeriodName(BarsPeriodType type)
        {
            return type.ToString().ToLowerInvariant();
        }

        protected override void OnBarUpdate()
        {
            // Historical bars never trade and are not sent one by one: the daemon gets them
            // as one history backfill at the switch to real time.
            if (State != State.Realtime || worker == null || BarsInProgress != 0) return;
            lock (orderGate)
            {
                if (Bars.IsFirstBarOfSession)
                    sessionStartPnl = SystemPerformance.RealTimeTrades.TradesPerformance.Currency.CumProfit;
                if (waitingForFlatAccount && PositionAccount.MarketPosition == MarketPosition.Flat)
                {
                    waitingForFlatAccount = false;
                    Say("account " + Account.Name + " is flat; trading resumes");
                }
                CheckClosedOutside();
                if (entryTimeProvisional && Position.MarketPosition != MarketPosition.Flat)
                {
                    entryTime = AitbTimes.ToUtc(Time[0], displayZone); // the entry filled inside the bar that just closed
                    entryTimeProvisional = false;
                }
                if (entryPending && Position.MarketPosition == MarketPosition.Flat && CurrentBar > entryPendingBar + 1)
                {
                    Say("entry order did not fill within a bar; no longer waiting for it");
                    entryPending = false;
                }
                if (!closedOutside) TrailStop();
                DateTime closeUtc = AitbTimes.ToUtc(Time[0], displayZone);
                AitbBar bar = new AitbBar(closeUtc, Open[0], High[0], Low[0], Close[0], Volume[0]);
                worker.EnqueueBar(bar, Snapshot(closeUtc), CurrentBar);
            }
        }

        /// <summary>Help Guide, "Strategy Position vs. Account Position": a position closed by
        /// hand (Chart Trader, Positions tab) leaves the strategy's own position open, and its
        /// stop, target or session-close exit would then open a new position. Say so loudly and
        /// place or move nothing until the two agree again (the trader disables the strategy).</summary>
        private void CheckClosedOutside()
        {
            bool now = Position.MarketPosition != MarketPosition.Flat && !entryPending
                && PositionAccount != null && PositionAccount.MarketPosition == MarketPosition.Flat;
            if (now && !closedOutside)
            {
                string text = string.Format(CultureInfo.InvariantCulture,
                    "account {0} is flat but the strategy still holds {1} {2} {3}: the position was closed outside the strategy. " +
                    "Disable the strategy now: its stop, target or session-close exit would open a new position",
                    Account.Name, Position.MarketPosition, Position.Quantity, Instrument.FullName);
                Say("NOT TRADING: " + text);
                Log("AITradingBridge NOT TRADING: " + text, LogLevel.Alert);
            }
            else if (!now && closedOutside)
                Say("strategy and account positions agree again; trading resumes");
            closedOutside = now;
        }

        /// <summary>Moves a trailing stop at the bar close (see AitbTrail), never through the market.</summary>
        private void TrailStop()
        {
            int side = SideOf(Position.MarketPosition);
            if (!trailing || side == 0 || double.IsNaN(stopPrice)) return;
            bestPrice = side > 0 ? Math.Max(bestPrice, High[0]) : Math.Min(bestPrice, Low[0]);
            double next = Instrument.MasterInstrument.RoundToTickSize(
                AitbTrail.NextStop(side, stopPrice, bestPrice, trailPoints, Close[0], Instrument.MasterInstrument.TickSize));
            if (next == stopPrice) return;
            string problem = AitbStops.Problem(side, next, GetCurrentBid(), GetCurrentAsk(), Instrument.MasterInstrument.TickSize, StopMarginTicks);
            if (problem != null)
            {
                Say("trail: stop stays at " + Format(stopPrice) + " (" + problem + ")");
                return;
            }
            double before = stopPrice;
            MoveStop(next);
            Say("trail: stop " + Format(before) + " -> " + Format(next));
        }

        /// <summary>The position for the daemon, from NinjaTrader's Position (the source of truth).</summary>
        private AitbPosition Snapshot(DateTime fillBarIfUnknown)
        {
            AitbPosition p = new AitbPosition();
            p.Side = SideOf(Position.MarketPosition);
            if (p.Side == 0) return p;
            if (!entryTime.HasValue)
            {
                entryTime = fillBarIfUnknown;
                entryTimeProvisional = true;
            }
            p.Quantity = Position.Quantity;
            p.EntryPrice = Position.AveragePrice;
            p.EntryTime = entryTime;
            p.StopPrice = stopPrice;
            p.TargetPrice = targetPrice;
            p.Trailing = trailing;
            return p;
        }

        private static int SideOf(MarketPosition marketPosition)
        {
            if (marketPosition == MarketPosition.Long) return 1;
            if (marketPosition == MarketPosition.Short) return -1;
            return 0;
        }

        /// <summary>Worker thread: hand the decision to the strategy thread.</summary>
        private void OnWorkerDecision(AitbJob job)
        {
            try
            {
                TriggerCustomEvent(ExecuteDecision, job);
            }
            catch (Exception ex)
            {
                Say("decision for " + AitbJsonWriter.FormatTime(job.Bar.Time) + " dropped: " + ex.Message);
            }
        }

        private void ExecuteDecision(object state)
        {
            AitbJob job = (AitbJob)state;
            AitbDecision d = job.Decision;
            double ageMs = job.AgeMs;
            string result;
            lock (orderGate) result = Execute(job, d, ageMs);
            if (d.Outcome == AitbDecision.OutcomeUnreachable)
            {
                if (!outage)
                    Log("AITradingBridge: daemon at " + Endpoint + " is not answering; acting as HOLD. Working stop and target orders stay in place.", LogLevel.Warning);
                outage = true;
            }
            else if (outage)
            {
                outage = false;
                Log("AITradingBridge: daemon at " + Endpoint + " is answering again.", LogLevel.Information);
            }
            Say(string.Format(CultureInfo.InvariantCulture, "{0} seq={1} {2} outcome={3}{4} tries={5}{6} {7:0.0}ms age={8:0}ms -> {9}",
                AitbJsonWriter.FormatTime(d.BarTime), d.Seq, d.Name, d.Outcome, d.WarmingUp ? " warming_up" : "",
                d.Attempts, d.Resynced ? " resynced" : "", d.LatencyMs, ageMs, result));
            if (decisionLog != null) decisionLog.Append(d, ageMs, result);
        }

        /// <summary>A risk rail changed the decision: the trader sees it; the model's own
        /// action is never traded (PROTOCOL v1.1).</summary>
        private void ShowRisk(AitbDecision d)
        {
            if (d.RiskRule == null) return;
            string wanted = d.RiskModelAction >= 0 ? AitbProtocol.ActionNames[d.RiskModelAction] : "?";
            string text = "risk " + d.RiskRule + ": " + d.RiskDetail + " (model wanted " + wanted + ", doing " + d.Name + ")";
            Say(text);
            Draw.TextFixed(this, RiskTag, "AITradingBridge " + text, TextPosition.TopRight);
        }

        /// <summary>Carries out one decision; returns what was done, for the log.</summary>
        private string Execute(AitbJob job, AitbDecision d, double ageMs)
        {
            if (d.Outcome == AitbDecision.OutcomeUnreachable)
                return "HOLD (daemon unreachable after " + d.Attempts + " tries: " + d.Message + "; stops stay working)";
            if (!d.IsOk)
                return "HOLD (" + d.Outcome + ": " + (d.ErrorCode != null ? d.ErrorCode + " " : "") + d.Message + ")";
            ShowRisk(d);
            if (d.Action == AitbProtocol.Hold) return d.WarmingUp ? "HOLD (warming up)" : "HOLD";
            if (State != State.Realtime) return "not executed: strategy is no longer real-time";
            if (CurrentBar != job.BarIndex) return "not executed: a newer bar closed before the reply arrived";
            if (ageMs > MaxDecisionAgeMs)
                return string.Format(CultureInfo.InvariantCulture, "not executed: decision arrived late, {0:0} ms after the bar closed (limit {1} ms)", ageMs, MaxDecisionAgeMs);
            if (refusal != null) return "not executed: " + refusal;
            if (waitingForFlatAccount) return "not executed: the account position is not flat";
            if (closedOutside) return "not executed: the position was closed outside the strategy; disable the strategy";
            string modelProblem = limits.ModelRefusal(session.Model, Instrument.MasterInstrument.Name,
                PeriodName(BarsPeriod.BarsPeriodType), BarsPeriod.Value);
            if (modelProblem != null) return "not executed: " + modelProblem;

            int side = SideOf(Position.MarketPosition);
            string guard = AitbGuard.Refusal(d, side, entryPending, Close[0], stopPrice);
            if (guard != null) return "not executed: " + guard;
            double tick = Instrument.MasterInstrument.TickSize;
            double bid = GetCurrentBid(), ask = GetCurrentAsk();

            switch (d.Action)
            {
                case AitbProtocol.Buy:
                case AitbProtocol.Sell:
                    {
                        // The strategy only enters when its own position is flat, so any account
                        // position in this instrument belongs to someone else: a second chart of
                        // this strategy, another strategy, or a manual order. Never stack on it.
                        Position account = PositionAccount;
                        if (account != null && account.MarketPosition != MarketPosition.Flat)
                            return string.Format(CultureInfo.InvariantCulture,
                                "not executed: account {0} holds {1} {2} {3} that this strategy does not own; never a second position",
                                Account.Name, account.MarketPosition, account.Quantity, Instrument.FullName);
                        string limit = limits.EntryRefusal(d, Quantity, bid, ask, tick);
                        if (limit != null) return "not executed: " + limit;
                        int entrySide = d.Action == AitbProtocol.Buy ? 1 : -1;
                        string stopProblem = AitbStops.Problem(entrySide, d.StopPrice, bid, ask, tick, StopMarginTicks);
                        if (stopProblem != null) return "not executed: the bracket's " + stopProblem;
                        if (LogOnly) return "LogOnly: would " + Describe(d);
                        return Enter(d);
                    }
                case AitbProtocol.MoveToBreakeven:
                case AitbProtocol.DisableTrail:
                    {
                        if (LogOnly) return "LogOnly: would " + Describe(d);
                        if (d.Action == AitbProtocol.DisableTrail) trailing = false;
                        double proposed = Instrument.MasterInstrument.RoundToTickSize(AitbGuard.SafeStop(side, stopPrice, d.StopPrice, Close[0]));
                        string problem = AitbStops.Problem(side, proposed, bid, ask, tick, StopMarginTicks);
                        if (problem != null)
                            return Describe(d) + " not sent: " + problem + "; the stop stays at " + Format(stopPrice);
                        MoveStop(proposed);
                        return Describe(d);
                    }
                case AitbProtocol.EnableTrail:
                    // As in training (env/execution.py enable_trailing): a second ENABLE_TRAIL
                    // while trailing changes nothing. Restarting the best price at this close
                    // would hold the stop further back than the model was trained with.
                    if (LogOnly) return "LogOnly: would " + Describe(d);
                    if (trailing)
                        return string.Format(CultureInfo.InvariantCulture, "trail already on ({0} points); unchanged", trailPoints);
                    trailing = true;
                    trailPoints = d.TrailPoints;
                    bestPrice = Close[0];
                    return Describe(d);
            }
            return "HOLD";
        }

        private string Enter(AitbDecision d)
        {
            bool isLong = d.Action == AitbProtocol.Buy;
            string signal = isLong ? LongSignal : ShortSignal;
            double stop = Instrument.MasterInstrument.RoundToTickSize(d.StopPrice);
            double target = Instrument.MasterInstrument.RoundToTickSize(d.TargetPrice);
            // Our own state first: the fill's OnExecutionUpdate/OnPositionUpdate must find it
            // in place even if a connection delivers them before Enter* returns. entryPending
            // also marks a flat update arriving now as the previous trade's (OnPositionUpdate).
            adopted = false;
            activeSignal = signal;
            stopPrice = stop;
            targetPrice = target;
            trailing = false;
            entryTime = null;
            entryTimeProvisional = false;
            entryPending = true;
            entryPendingBar = CurrentBar;
            // Set* before Enter*: NinjaTrader submits this OCO bracket on the entry's fill.
            // Every entry goes through here, so a stop moved to breakeven or trailed in an
            // earlier trade (NinjaTrader keeps the last Set* value per signal) is always
            // replaced before the next entry can fill.
            SetStopLoss(signal, CalculationMode.Price, stop, false);
            SetProfitTarget(signal, CalculationMode.Price, target);
            if (isLong) EnterLong(Quantity, signal); else EnterShort(Quantity, signal);
            return Describe(d);
        }

        private void MoveStop(double price)
        {
            price = Instrument.MasterInstrument.RoundToTickSize(price);
            if (price == stopPrice) return;
            if (adopted)
            {
                stopPrice = price;
                SubmitAdoptedOrders(); // same signal names: NinjaTrader amends the working orders
                return;
            }
            if (activeSignal == null) return;
            stopPrice = price;
            SetStopLoss(activeSignal, CalculationMode.Price, price, false);
        }

        private static string Describe(AitbDecision d)
        {
            switch (d.Action)
            {
                case AitbProtocol.Buy:
                case AitbProtocol.Sell:
                    return string.Format(CultureInfo.InvariantCulture, "{0} market, stop {1}, target {2}",
                        d.Action == AitbProtocol.Buy ? "buy" : "sell", d.StopPrice, d.TargetPrice);
                case AitbProtocol.MoveToBreakeven:
                    return string.Format(CultureInfo.InvariantCulture, "stop to breakeven {0}", d.StopPrice);
                case AitbProtocol.EnableTrail:
                    return string.Format(CultureInfo.InvariantCulture, "trail on, {0} points", d.TrailPoints);
                case AitbProtocol.DisableTrail:
                    return string.Format(CultureInfo.InvariantCulture, "trail off, stop {0}", d.StopPrice);
            }
            return "HOLD";
        }

        protected override void OnOrderUpdate(Order order, double limitPrice, double stopPrice, int quantity, int filled,
            double averageFillPrice, OrderState orderState, DateTime time, ErrorCode error, string comment)
        {
            if (orderState != OrderState.Rejected) return;
            lock (orderGate)
            {
                Say("order " + order.Name + " rejected: " + comment);
                bool protective = order.Name == "Stop loss" || order.Name == AdoptedStopName;
                // With StopCancelClose NinjaTrader itself closes the position; with the
                // IgnoreRejects setting the position would be left without its stop.
                if (protective && RealtimeErrorHandling == RealtimeErrorHandling.StopCancelCloseIgnoreRejects)
                {
                    Say("the position has no working stop; closing it at market");
                    if (Position.MarketPosition == MarketPosition.Long) ExitLong("AITB Unprotected", "");
                    else if (Position.MarketPosition == MarketPosition.Short) ExitShort("AITB Unprotected", "");
                }
            }
        }

        protected override void OnExecutionUpdate(Execution execution, string executionId, double price, int quantity,
            MarketPosition marketPosition, string orderId, DateTime time)
        {
            if (execution.Order == null) return;
            lock (orderGate)
            {
                string name = execution.Order.Name;
                if (name == activeSignal && entryPending)
                {
                    entryPending = false;
                    if (!entryTime.HasValue)
                    {
                        // The fill is inside the bar now forming; its close time is known once it
                        // closes (OnBarUpdate corrects this). Until then the next bar's stamp, or
                        // the fill time, is the best estimate.
                        entryTime = AitbTimes.ToUtc(FormingBarTime(time), displayZone);
                        entryTimeProvisional = true;
                    }
                }
                if ((adoptedStopOrder != null || adoptedTargetOrder != null) && Position.MarketPosition == MarketPosition.Flat)
                {
                    // The adopted stop and target are two separate orders, not an OCO pair, and
                    // live until cancelled: whatever closed the position (one of them, or the
                    // market exit after a rejected stop), the rest must go. A leftover one would
                    // open a new position later, and makes NinjaTrader ignore the next entry's
                    // Set() bracket (Help Guide, "Managed Approach", order handling rules).
                    foreach (Order other in new[] { adoptedStopOrder, adoptedTargetOrder })
                        if (other != null && other != execution.Order && (other.OrderState == OrderState.Working || other.OrderState == OrderState.Accepted))
                            CancelOrder(other);
                    adoptedStopOrder = null;
                    adoptedTargetOrder = null;
                }
                if (State == State.Realtime)
                    Say(string.Format(CultureInfo.InvariantCulture, "fill: {0} {1} @ {2} ({3})", name, quantity, price, marketPosition));
            }
        }

        protected override void OnPositionUpdate(Position position, double averagePrice, int quantity, MarketPosition marketPosition)
        {
            lock (orderGate)
            {
                // A flat update can arrive late: inside the next EnterLong, or after the next
                // entry filled. It ends the trade only if NinjaTrader's position is flat now
                // and no new entry is on its way; otherwise it belongs to the previous trade.
                if (marketPosition == MarketPosition.Flat && Position.MarketPosition == MarketPosition.Flat && !entryPending)
                {
                    activeSignal = null;
                    adopted = false;
                    stopPrice = double.NaN;
                    targetPrice = double.NaN;
                    trailing = false;
                    entryTime = null;
                    entryTimeProvisional = false;
                }
                if (State == State.Realtime && worker != null && (Position.MarketPosition == MarketPosition.Flat || !entryPending))
                {
                    double realized = SystemPerformance.RealTimeTrades.TradesPerformance.Currency.CumProfit - sessionStartPnl;
                    worker.EnqueuePosition(Snapshot(AitbTimes.ToUtc(FormingBarTime(Time[0]), displayZone)), realized);
                }
            }
        }

        /// <summary>Time stamp of the bar now forming (its close time for time-based bars).</summary>
        private DateTime FormingBarTime(DateTime fallback)
        {
            return Bars.Count > CurrentBar + 1 ? Bars.GetTime(CurrentBar + 1) : fallback;
        }

        private void Say(string message)
        {
            Print("AITB " + (Instrument != null ? Instrument.FullName : "") + " " + message);
        }

        private static string Format(double price)
        {
            return double.IsNaN(price) ? "(none)" : price.ToString("R", CultureInfo.InvariantCulture);
        }

        private static string SafeName(string text)
        {
            char[] chars = text.ToCharArray();
            for (int i = 0; i < chars.Length; i++)
                if (!(char.IsLetterOrDigit(chars[i]) || chars[i] == '-' || chars[i] == '_')) chars[i] = '_';
            return new string(chars);
        }

        #region Properties
        private const string Group = "AI Trading Bridge";
        private const string LimitsGroup = "AI Trading Bridge limits";

        [NinjaScriptProperty]
        [Display(Name = "Endpoint", Description = "Daemon address, e.g. tcp://127.0.0.1:5555 or tcp://192.168.1.20:5555", Order = 1, GroupName = Group)]
        public string Endpoint { get; set; }

        [NinjaScriptProperty]
        [Range(100, 60000)]
        [Display(Name = "Timeout (ms)", Description = "How long to wait for each reply before retrying", Order = 2, GroupName = Group)]
        public int TimeoutMs { get; set; }

        [NinjaScriptProperty]
        [Range(1, 10)]
        [Display(Name = "Tries", Description = "Tries per request before acting as HOLD for that bar; all tries together take at most Timeout x Tries", Order = 3, GroupName = Group)]
        public int Retries { get; set; }

        [NinjaScriptProperty]
        [Display(Name = "Client id", Description = "Empty = nt8-<account>-<instrument>-<period>; a second instance with the same id gets -2", Order = 4, GroupName = Group)]
        public string ClientId { get; set; }

        [NinjaScriptProperty]
        [Range(1, 1000)]
        [Display(Name = "Quantity", Description = "Contracts per entry (at most Max quantity)", Order = 5, GroupName = Group)]
        public int Quantity { get; set; }

        [NinjaScriptProperty]
        [Display(Name = "Log only", Description = "Log the daemon's decisions without placing any order", Order = 6, GroupName = Group)]
        public bool LogOnly { get; set; }

        [NinjaScriptProperty]
        [Range(50, 100000)]
        [Display(Name = "History bars", Description = "Bars of history sent at start and kept to rebuild a restarted daemon", Order = 7, GroupName = Group)]
        public int HistoryBars { get; set; }

        [NinjaScriptProperty]
        [Display(Name = "Write decision log", Description = @"CSV of every decision in Documents\NinjaTrader 8\AITradingBridge", Order = 8, GroupName = Group)]
        public bool WriteDecisionLog { get; set; }

        [NinjaScriptProperty]
        [Display(Name = "Account position at start", Description = "The account already holds a position: RefuseToTrade until it is flat, or Adopt it (new stop and target)", Order = 9, GroupName = Group)]
        public AitbAccountPositionAtStart AccountPositionAtStart { get; set; }

        [NinjaScriptProperty]
        [Range(1, 10000)]
        [Display(Name = "Adopted stop (ticks)", Description = "Stop for an adopted position, from its average price", Order = 10, GroupName = Group)]
        public int AdoptedStopTicks { get; set; }

        [NinjaScriptProperty]
        [Range(1, 10000)]
        [Display(Name = "Adopted target (ticks)", Description = "Target for an adopted position, from its average price", Order = 11, GroupName = Group)]
        public int AdoptedTargetTicks { get; set; }

        [NinjaScriptProperty]
        [Range(100, 600000)]
        [Display(Name = "Max decision age (ms)", Description = "A decision arriving later than this after its bar closed is not executed", Order = 1, GroupName = LimitsGroup)]
        public int MaxDecisionAgeMs { get; set; }

        [NinjaScriptProperty]
        [Range(1, 100)]
        [Display(Name = "Stop margin (ticks)", Description = "A stop must sit this many ticks (at least 1) beyond the bid (long) or ask (short), or it is not sent", Order = 2, GroupName = LimitsGroup)]
        public int StopMarginTicks { get; set; }

        [NinjaScriptProperty]
        [Range(1, 1000)]
        [Display(Name = "Max quantity", Description = "The strategy refuses to start with a larger Quantity", Order = 3, GroupName = LimitsGroup)]
        public int MaxQuantity { get; set; }

        [NinjaScriptProperty]
        [Range(1, 100000)]
        [Display(Name = "Max stop distance (ticks)", Description = "Entries whose stop is farther from the market are refused", Order = 4, GroupName = LimitsGroup)]
        public int MaxStopTicks { get; set; }

        [NinjaScriptProperty]
        [Display(Name = "Expected model sha256", Description = "Empty = any; otherwise only this model (hello's model.sha256) may trade", Order = 5, GroupName = LimitsGroup)]
        public string ExpectedModelSha256 { get; set; }

        [NinjaScriptProperty]
        [Display(Name = "Expected model version", Description = "Empty = any; otherwise only this model version may trade", Order = 6, GroupName = LimitsGroup)]
        public string ExpectedModelVersion { get; set; }
        #endregion
    }
}
