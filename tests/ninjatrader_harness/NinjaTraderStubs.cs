// NinjaTraderStubs.cs -- a behavioural test double of the NinjaTrader 8 API members the
// ai-trading-bridge strategy uses. Not shipped: it exists so that the REAL strategy class
// runs under Mono on Linux, and so that a misspelt member or a wrong signature fails the
// test suite instead of the trader's NinjaScript Editor.
//
// Signatures follow the NinjaTrader 8 Help Guide (NinjaScript > Language Reference):
// OnStateChange, OnBarUpdate, OnOrderUpdate(Order, double, double, int, int, double,
// OrderState, DateTime, ErrorCode, string), OnExecutionUpdate(Execution, string, double,
// int, MarketPosition, string, DateTime), OnPositionUpdate(Position, double, int,
// MarketPosition), SetStopLoss(string, CalculationMode, double, bool),
// SetProfitTarget(string, CalculationMode, double), EnterLong/EnterShort(int, string)
// returning Order, ExitLongStopMarket(int, bool, int, double, string, string),
// TriggerCustomEvent(Action<object>, object), GetCurrentBid/GetCurrentAsk, PositionAccount,
// SystemPerformance.RealTimeTrades.TradesPerformance.Currency.CumProfit, Draw.TextFixed,
// Core.Globals.GeneralOptions.TimeZoneInfo, Bars.GetVolume returning long.
// Keep this file in step with the Help Guide, not with the strategy: it is the check.
//
// Behaviour modelled (Help Guide pages named):
// - State sequence SetDefaults -> (UI property values) -> Configure -> DataLoaded ->
//   Historical -> Transition -> Realtime -> Terminated ("Understanding the lifecycle of
//   NinjaScript objects"); a SimDriver in the test harness drives it.
// - Calculate: OnBarClose calls OnBarUpdate for bar N on the first tick of bar N+1;
//   OnEachTick calls it on every tick of the forming bar ("Calculate").
// - Managed orders: Set* prices are remembered per entry signal and submitted as an OCO
//   bracket when the entry fills; calling SetStopLoss while in the position amends the
//   working stop ("SetStopLoss()"); EntriesPerDirection limits entries.
// - Events: OnOrderUpdate, then OnExecutionUpdate, then OnPositionUpdate per fill
//   ("OnExecutionUpdate()": they may arrive inside EnterLong when the fill is immediate).
//   Options let a test fill inside EnterLong and deliver a flat OnPositionUpdate late.
// - Managed approach "internal order handling rules": a non-market Exit*() while a Set()
//   order is working, or a Set() bracket while a non-market Exit*() order is working, is
//   ignored ("order_ignored" event) ("Managed Approach").
// - A sell stop at or above the bid (a buy stop at or below the ask) is rejected, and
//   RealtimeErrorHandling applies ("RealtimeErrorHandling": StopCancelClose cancels the
//   strategy's orders, closes its position and terminates it).
// - StartBehavior with a non-flat account position ("Syncing Account Positions"):
//   AdoptAccountPosition (only with IsAdoptAccountPositionAware = true, "StartBehavior";
//   otherwise the strategy does not start) makes the account position the strategy's own; the
//   *SynchronizeAccount behaviours flatten the account to the strategy's (flat)
//   historical position; WaitUntilFlat/ImmediatelySubmit leave the account as it is and
//   trade on top of it.

using System;
using System.Collections.Generic;
using System.Globalization;

namespace System.ComponentModel.DataAnnotations
{
    // Mono's mono-mcs package does not ship System.ComponentModel.DataAnnotations.dll;
    // these mirror the two attributes NinjaScript properties use from it.
    [AttributeUsage(AttributeTargets.Property | AttributeTargets.Field | AttributeTargets.Parameter | AttributeTargets.Method, AllowMultiple = false)]
    public sealed class DisplayAttribute : Attribute
    {
        public string Name { get; set; }
        public string ShortName { get; set; }
        public string Description { get; set; }
        public string Prompt { get; set; }
        public string GroupName { get; set; }
        public int Order { get; set; }
        public Type ResourceType { get; set; }
    }

    [AttributeUsage(AttributeTargets.Property | AttributeTargets.Field | AttributeTargets.Parameter, AllowMultiple = false)]
    public class RangeAttribute : Attribute
    {
        public RangeAttribute(int minimum, int maximum) { }
        public RangeAttribute(double minimum, double maximum) { }
        public RangeAttribute(Type type, string minimum, string maximum) { }
    }
}

namespace NinjaTrader.Core
{
    /// <summary>Tools > Options > General.</summary>
    public class GeneralOptions
    {
        /// <summary>The time zone NinjaTrader displays and stamps bars in.</summary>
        public TimeZoneInfo TimeZoneInfo { get; set; }
    }

    public static class Globals
    {
        private static GeneralOptions generalOptions = new GeneralOptions { TimeZoneInfo = TimeZoneInfo.Local };

        /// <summary>Documents\NinjaTrader 8\ (with the trailing separator).</summary>
        public static string UserDataDir { get; set; }

        public static GeneralOptions GeneralOptions { get { return generalOptions; } }
    }
}

namespace NinjaTrader.Cbi
{
    public enum MarketPosition { Flat, Long, Short }

    public enum LogLevel { Alert, Error, Information, Warning }

    public enum OrderState
    {
        Accepted, CancelPending, CancelSubmitted, Cancelled, ChangePending, ChangeSubmitted,
        Filled, Initialized, PartFilled, Rejected, Submitted, TriggerPending, Unknown, Working
    }

    public enum OrderAction { Buy, BuyToCover, Sell, SellShort }

    public enum OrderType { Limit, Market, MIT, StopLimit, StopMarket }

    public enum TimeInForce { Day, Gtc, Gtd, Ioc, Opg }

    public enum Currency { AustralianDollar, BritishPound, CanadianDollar, Euro, HongKongDollar, JapaneseYen, SwissFranc, UsDollar, Unknown }

    public enum ErrorCode { NoError, Panic, UnableToCancelOrder, UnableToChangeOrder, UnableToSubmitOrder, UserAbort, OrderRejected }

    public class MasterInstrument
    {
        public string Name { get; internal set; }
        public double TickSize { get; internal set; }
        public double PointValue { get; internal set; }
        public Currency Currency { get; internal set; }

        public double RoundToTickSize(double price)
        {
            return Math.Round(Math.Round(price / TickSize) * TickSize, 10);
        }
    }

    public class Instrument
    {
        public string FullName { get; internal set; }
        public MasterInstrument MasterInstrument { get; internal set; }
    }

    public class Account
    {
        public string Name { get; internal set; }
        internal Position SimPosition;
    }

    public class Order
    {
        private static int nextId = 1;

        internal Order()
        {
            OrderId = "sim-" + (nextId++).ToString(CultureInfo.InvariantCulture);
        }

        public string Name { get; internal set; }
        public string OrderId { get; internal set; }
        public string FromEntrySignal { get; internal set; }
        public OrderState OrderState { get; internal set; }
        public OrderAction OrderAction { get; internal set; }
        public OrderType OrderType { get; internal set; }
        public double AverageFillPrice { get; internal set; }
        public double StopPrice { get; internal set; }
        public double LimitPrice { get; internal set; }
        public int Quantity { get; internal set; }
        public int Filled { get; internal set; }
        internal Order OcoPartner;
        internal bool IsEntry;
        internal bool LiveUntilCancelled;
        internal bool IsLong { get { return OrderAction == OrderAction.Buy || OrderAction == OrderAction.BuyToCover; } }
    }

    public class Execution
    {
        public Order Order { get; internal set; }
        public string Name { get; internal set; }
        public double Price { get; internal set; }
        public int Quantity { get; internal set; }
        public MarketPosition MarketPosition { get; internal set; }
        public DateTime Time { get; internal set; }
    }

    public class Position
    {
        public MarketPosition MarketPosition { get; internal set; }
        public int Quantity { get; internal set; }
        public double AveragePrice { get; internal set; }
        public Instrument Instrument { get; internal set; }

        internal int Signed { get { return MarketPosition == MarketPosition.Long ? Quantity : MarketPosition == MarketPosition.Short ? -Quantity : 0; } }

        internal void SetSigned(int signed, double averagePrice)
        {
            MarketPosition = signed > 0 ? MarketPosition.Long : signed < 0 ? MarketPosition.Short : MarketPosition.Flat;
            Quantity = Math.Abs(signed);
            AveragePrice = signed == 0 ? 0 : averagePrice;
        }
    }
}

namespace NinjaTrader.Data
{
    public enum BarsPeriodType { Tick = 0, Volume = 1, Range = 2, Second = 3, Minute = 4, Day = 5, Week = 6, Month = 7, Year = 8 }

    public class BarsPeriod
    {
        public BarsPeriodType BarsPeriodType { get; set; }
        public int Value { get; set; }
    }

    /// <summary>Bars of the chart; the last one may still be forming.</summary>
    public class Bars
    {
        internal readonly List<DateTime> Times = new List<DateTime>();
        internal readonly List<double> Opens = new List<double>(), Highs = new List<double>(), Lows = new List<double>(), Closes = new List<double>();
        internal readonly List<long> Volumes = new List<long>();
        internal readonly List<bool> SessionStarts = new List<bool>();
        internal int Current;

        public int Count { get { return Times.Count; } }
        public bool IsFirstBarOfSession { get { return Current >= 0 && Current < SessionStarts.Count && SessionStarts[Current]; } }
        public DateTime GetTime(int index) { return Times[index]; }
        public double GetOpen(int index) { return Opens[index]; }
        public double GetHigh(int index) { return Highs[index]; }
        public double GetLow(int index) { return Lows[index]; }
        public double GetClose(int index) { return Closes[index]; }
        public long GetVolume(int index) { return Volumes[index]; }
    }
}

// Namespaces of the standard NinjaScript template's using list, so either form compiles.
namespace NinjaTrader.Gui { internal sealed class StubNamespaceMarker { } }
namespace NinjaTrader.Gui.Chart { internal sealed class StubNamespaceMarker { } }
namespace NinjaTrader.Gui.SuperDom { internal sealed class StubNamespaceMarker { } }
namespace NinjaTrader.Gui.Tools { internal sealed class StubNamespaceMarker { } }
namespace NinjaTrader.Core.FloatingPoint { internal sealed class StubNamespaceMarker { } }
namespace NinjaTrader.NinjaScript.Indicators { internal sealed class StubNamespaceMarker { } }

namespace NinjaTrader.NinjaScript.DrawingTools
{
    public enum TextPosition { BottomLeft, BottomRight, Center, TopLeft, TopRight }

    public class TextFixed
    {
        public string Tag { get; internal set; }
        public string DisplayText { get; internal set; }
    }

    public static class Draw
    {
        public static TextFixed TextFixed(NinjaTrader.NinjaScript.NinjaScriptBase owner, string tag, string text, TextPosition textPosition)
        {
            owner.SimEmit("draw_text", "tag", tag, "text", text, "position", textPosition.ToString());
            TextFixed drawn = new TextFixed();
            drawn.Tag = tag;
            drawn.DisplayText = text;
            return drawn;
        }
    }
}

namespace NinjaTrader.NinjaScript
{
    using NinjaTrader.Cbi;
    using NinjaTrader.Data;

    public enum State { SetDefaults, Configure, Active, DataLoaded, Historical, Transition, Realtime, Terminated, Finalized, Undefined }

    public enum Calculate { OnBarClose, OnEachTick, OnPriceChange }

    public enum CalculationMode { Currency, Percent, Pips, Price, Ticks }

    public enum EntryHandling { AllEntries, UniqueEntries }

    public enum StartBehavior { AdoptAccountPosition, ImmediatelySubmit, ImmediatelySubmitSynchronizeAccount, WaitUntilFlat, WaitUntilFlatSynchronizeAccount }

    public enum RealtimeErrorHandling { IgnoreAllErrors, StopCancelClose, StopCancelCloseIgnoreRejects }

    public enum StopTargetHandling { ByStrategyPosition, PerEntryExecution }

    public enum ConnectionLossHandling { KeepRunning, Recalculate, StopStrategy }

    [AttributeUsage(AttributeTargets.Property, AllowMultiple = false)]
    public sealed class NinjaScriptPropertyAttribute : Attribute { }

    public interface ISeries<T>
    {
        T this[int barsAgo] { get; }
        int Count { get; }
    }

    /// <summary>A series read barsAgo from the bar being processed.</summary>
    public class SimSeries<T> : ISeries<T>
    {
        private readonly NinjaScriptBase owner;
        private readonly Func<int, T> at;

        internal SimSeries(NinjaScriptBase owner, Func<int, T> at)
        {
            this.owner = owner;
            this.at = at;
        }

        public T this[int barsAgo] { get { return at(owner.CurrentBar - barsAgo); } }
        public int Count { get { return owner.CurrentBar + 1; } }
    }

    public class PriceSeries : SimSeries<double>
    {
        internal PriceSeries(NinjaScriptBase owner, Func<int, double> at) : base(owner, at) { }
    }

    public class VolumeSeries : SimSeries<double>
    {
        internal VolumeSeries(NinjaScriptBase owner, Func<int, double> at) : base(owner, at) { }
    }

    public class TimeSeries : SimSeries<DateTime>
    {
        internal TimeSeries(NinjaScriptBase owner, Func<int, DateTime> at) : base(owner, at) { }
    }

    /// <summary>Where the double reports what the strategy did (the harness prints it).</summary>
    public interface ISimSink
    {
        void Emit(string instance, string kind, object[] fields);
    }

    /// <summary>Members of NinjaScript / NinjaScriptBase the strategy uses.</summary>
    public abstract class NinjaScriptBase
    {
        internal readonly object SimGate = new object();
        internal readonly Queue<KeyValuePair<Action<object>, object>> SimCustomEvents = new Queue<KeyValuePair<Action<object>, object>>();
        internal int SimCustomEventCount;
        internal ISimSink SimSink;
        internal string SimInstance = "";
        internal double SimBid, SimAsk;
        internal Bars SimBars = new Bars();
        private State state = State.SetDefaults;

        protected NinjaScriptBase()
        {
            Open = new PriceSeries(this, i => SimBars.Opens[i]);
            High = new PriceSeries(this, i => SimBars.Highs[i]);
            Low = new PriceSeries(this, i => SimBars.Lows[i]);
            Close = new PriceSeries(this, i => SimBars.Closes[i]);
            Volume = new VolumeSeries(this, i => SimBars.Volumes[i]);
            Time = new TimeSeries(this, i => SimBars.Times[i]);
            BarsPeriod = new BarsPeriod();
            CurrentBar = -1;
        }

        public string Name { get; set; }
        public string Description { get; set; }
        public State State { get { return state; } }
        public Calculate Calculate { get; set; }
        public int CurrentBar { get; internal set; }
        public int BarsInProgress { get { return 0; } }
        public bool IsFirstTickOfBar { get; internal set; }
        public Bars Bars { get { return SimBars; } }
        public BarsPeriod BarsPeriod { get; internal set; }
        public Instrument Instrument { get; internal set; }
        public ISeries<double> Open { get; private set; }
        public ISeries<double> High { get; private set; }
        public ISeries<double> Low { get; private set; }
        public ISeries<double> Close { get; private set; }
        public VolumeSeries Volume { get; private set; }
        public TimeSeries Time { get; private set; }
        public double TickSize { get { return Instrument.MasterInstrument.TickSize; } }

        protected virtual void OnStateChange() { }
        protected virtual void OnBarUpdate() { }

        public double GetCurrentBid() { return SimBid; }
        public double GetCurrentAsk() { return SimAsk; }

        public void Print(object value)
        {
            SimEmit("print", "text", value == null ? "" : value.ToString());
        }

        public void Log(string message, LogLevel logLevel)
        {
            SimEmit("log", "text", message, "level", logLevel.ToString());
        }

        /// <summary>Queued; the double runs it on the strategy's thread (SimPumpCustomEvents).</summary>
        public void TriggerCustomEvent(Action<object> customEvent, object state)
        {
            lock (SimGate)
            {
                SimCustomEvents.Enqueue(new KeyValuePair<Action<object>, object>(customEvent, state));
                SimCustomEventCount++;
                System.Threading.Monitor.PulseAll(SimGate);
            }
        }

        public void TriggerCustomEvent(Action<object> customEvent, int barsSeriesIndex, object state)
        {
            TriggerCustomEvent(customEvent, state);
        }

        internal void SimEmit(string kind, params object[] fields)
        {
            if (SimSink != null) SimSink.Emit(SimInstance, kind, fields);
        }

        internal void SimSetState(State next)
        {
            state = next;
            SimEmit("state", "state", next.ToString());
            OnStateChange();
        }

        internal void SimCallBarUpdate()
        {
            OnBarUpdate();
        }

        /// <summary>Runs queued custom events; waits up to waitMs for the count to reach expected.</summary>
        internal void SimPumpCustomEvents(int expectedTotal, int waitMs)
        {
            DateTime until = DateTime.UtcNow.AddMilliseconds(waitMs);
            while (true)
            {
                KeyValuePair<Action<object>, object> next;
                lock (SimGate)
                {
                    while (SimCustomEvents.Count == 0 && SimCustomEventCount < expectedTotal)
                    {
                        int left = (int)(until - DateTime.UtcNow).TotalMilliseconds;
                        if (left <= 0) break;
                        System.Threading.Monitor.Wait(SimGate, left);
                    }
                    if (SimCustomEvents.Count == 0) return;
                    next = SimCustomEvents.Dequeue();
                }
                if (State == State.Terminated) continue;
                next.Key(next.Value);
            }
        }
    }

    public class TradesPerformanceValues
    {
        internal double CumProfitValue;
        public double CumProfit { get { return CumProfitValue; } }
    }

    public class TradesPerformance
    {
        private readonly TradesPerformanceValues currency = new TradesPerformanceValues();
        public TradesPerformanceValues Currency { get { return currency; } }
    }

    public class TradeCollection
    {
        private readonly TradesPerformance performance = new TradesPerformance();
        public TradesPerformance TradesPerformance { get { return performance; } }
        public int Count { get; internal set; }
    }

    public class SystemPerformance
    {
        private readonly TradeCollection realtime = new TradeCollection();
        private readonly TradeCollection all = new TradeCollection();
        public TradeCollection RealTimeTrades { get { return realtime; } }
        public TradeCollection AllTrades { get { return all; } }
    }

    /// <summary>Members of StrategyBase the strategy uses (managed order approach), with a
    /// simulated broker behind them.</summary>
    public abstract class StrategyBase : NinjaScriptBase
    {
        internal readonly List<Order> SimWorking = new List<Order>();
        internal readonly Dictionary<string, double> SimStops = new Dictionary<string, double>();
        internal readonly Dictionary<string, double> SimTargets = new Dictionary<string, double>();
        internal readonly List<Action> SimLatePositionUpdates = new List<Action>();
        internal bool SimFillInsideEnter;
        internal bool SimLateFlatUpdates;
        internal bool SimRejectStopChanges; // the broker rejects every change of a stop price
        internal int SimEntriesThisDirection;
        private readonly Position position = new Position();
        private readonly SystemPerformance performance = new SystemPerformance();

        protected StrategyBase()
        {
            RealtimeErrorHandling = RealtimeErrorHandling.StopCancelClose;
            StartBehavior = StartBehavior.WaitUntilFlat;
        }

        public int BarsRequiredToTrade { get; set; }
        public int EntriesPerDirection { get; set; }
        public EntryHandling EntryHandling { get; set; }
        public bool IsExitOnSessionCloseStrategy { get; set; }
        public int ExitOnSessionCloseSeconds { get; set; }
        public bool IsInstantiatedOnEachOptimizationIteration { get; set; }
        public StartBehavior StartBehavior { get; set; }
        /// <summary>"StartBehavior": AdoptAccountPosition needs this set to true first.</summary>
        public bool IsAdoptAccountPositionAware { get; set; }
        public RealtimeErrorHandling RealtimeErrorHandling { get; set; }
        public StopTargetHandling StopTargetHandling { get; set; }
        public ConnectionLossHandling ConnectionLossHandling { get; set; }
        public TimeInForce TimeInForce { get; set; }
        public bool TraceOrders { get; set; }
        public Position Position { get { return position; } }
        public Account Account { get; internal set; }
        public Position PositionAccount { get { return Account.SimPosition; } }
        public SystemPerformance SystemPerformance { get { return performance; } }

        protected virtual void OnExecutionUpdate(Execution execution, string executionId, double price, int quantity,
            MarketPosition marketPosition, string orderId, DateTime time) { }
        protected virtual void OnPositionUpdate(Position position, double averagePrice, int quantity, MarketPosition marketPosition) { }
        protected virtual void OnOrderUpdate(Order order, double limitPrice, double stopPrice, int quantity, int filled,
            double averageFillPrice, OrderState orderState, DateTime time, ErrorCode error, string comment) { }

        // ------------------------------------------------------------ entries and exits

        public Order EnterLong() { return EnterLong(1, ""); }
        public Order EnterLong(string signalName) { return EnterLong(1, signalName); }
        public Order EnterLong(int quantity) { return EnterLong(quantity, ""); }
        public Order EnterLong(int quantity, string signalName) { return SimEnter(OrderAction.Buy, quantity, signalName); }
        public Order EnterShort() { return EnterShort(1, ""); }
        public Order EnterShort(string signalName) { return EnterShort(1, signalName); }
        public Order EnterShort(int quantity) { return EnterShort(quantity, ""); }
        public Order EnterShort(int quantity, string signalName) { return SimEnter(OrderAction.SellShort, quantity, signalName); }
        public Order ExitLong() { return ExitLong(Position.Quantity, "Exit", ""); }
        public Order ExitLong(string signalName, string fromEntrySignal) { return ExitLong(Position.Quantity, signalName, fromEntrySignal); }
        public Order ExitLong(int quantity, string signalName, string fromEntrySignal) { return SimExitMarket(MarketPosition.Long, quantity, signalName, fromEntrySignal); }
        public Order ExitShort() { return ExitShort(Position.Quantity, "Exit", ""); }
        public Order ExitShort(string signalName, string fromEntrySignal) { return ExitShort(Position.Quantity, signalName, fromEntrySignal); }
        public Order ExitShort(int quantity, string signalName, string fromEntrySignal) { return SimExitMarket(MarketPosition.Short, quantity, signalName, fromEntrySignal); }

        public Order ExitLongStopMarket(int barsInProgressIndex, bool isLiveUntilCancelled, int quantity, double stopPrice, string signalName, string fromEntrySignal)
        {
            return SimExitWorking(OrderAction.Sell, OrderType.StopMarket, quantity, stopPrice, signalName, fromEntrySignal, isLiveUntilCancelled);
        }

        public Order ExitShortStopMarket(int barsInProgressIndex, bool isLiveUntilCancelled, int quantity, double stopPrice, string signalName, string fromEntrySignal)
        {
            return SimExitWorking(OrderAction.BuyToCover, OrderType.StopMarket, quantity, stopPrice, signalName, fromEntrySignal, isLiveUntilCancelled);
        }

        public Order ExitLongLimit(int barsInProgressIndex, bool isLiveUntilCancelled, int quantity, double limitPrice, string signalName, string fromEntrySignal)
        {
            return SimExitWorking(OrderAction.Sell, OrderType.Limit, quantity, limitPrice, signalName, fromEntrySignal, isLiveUntilCancelled);
        }

        public Order ExitShortLimit(int barsInProgressIndex, bool isLiveUntilCancelled, int quantity, double limitPrice, string signalName, string fromEntrySignal)
        {
            return SimExitWorking(OrderAction.BuyToCover, OrderType.Limit, quantity, limitPrice, signalName, fromEntrySignal, isLiveUntilCancelled);
        }

        public void CancelOrder(Order order)
        {
            if (SimWorking.Contains(order)) SimCancel(order);
        }

        public void SetStopLoss(CalculationMode mode, double value) { SetStopLoss("", mode, value, false); }

        public void SetStopLoss(string fromEntrySignal, CalculationMode mode, double value, bool isSimulatedStop)
        {
            double price = SimPrice(mode, value, true);
            SimStops[fromEntrySignal ?? ""] = price;
            SimEmit("set_stop", "signal", fromEntrySignal, "price", price);
            foreach (Order o in SimWorking.ToArray())
                if (o.Name == "Stop loss" && (string.IsNullOrEmpty(fromEntrySignal) || o.FromEntrySignal == fromEntrySignal))
                    SimChange(o, price);
        }

        public void SetProfitTarget(CalculationMode mode, double value) { SetProfitTarget("", mode, value, false); }
        public void SetProfitTarget(CalculationMode mode, double value, bool isMIT) { SetProfitTarget("", mode, value, isMIT); }
        public void SetProfitTarget(string fromEntrySignal, CalculationMode mode, double value) { SetProfitTarget(fromEntrySignal, mode, value, false); }

        public void SetProfitTarget(string fromEntrySignal, CalculationMode mode, double value, bool isMIT)
        {
            double price = SimPrice(mode, value, false);
            SimTargets[fromEntrySignal ?? ""] = price;
            SimEmit("set_target", "signal", fromEntrySignal, "price", price);
            foreach (Order o in SimWorking.ToArray())
                if (o.Name == "Profit target" && (string.IsNullOrEmpty(fromEntrySignal) || o.FromEntrySignal == fromEntrySignal))
                    SimChange(o, price);
        }

        // ------------------------------------------------------------ the simulated broker

        private double SimPrice(CalculationMode mode, double value, bool stop)
        {
            if (mode == CalculationMode.Price) return value;
            if (mode == CalculationMode.Ticks)
            {
                int side = Position.MarketPosition == MarketPosition.Short ? -1 : 1;
                return Position.AveragePrice + (stop ? -side : side) * value * TickSize;
            }
            throw new NotSupportedException("the double models CalculationMode.Price and Ticks only");
        }

        private Order SimEnter(OrderAction action, int quantity, string signal)
        {
            if (State != State.Realtime && State != State.Historical) return null;
            int side = action == OrderAction.Buy ? 1 : -1;
            if (Math.Sign(Position.Signed) == side && SimEntriesThisDirection >= Math.Max(1, EntriesPerDirection))
            {
                SimEmit("entry_ignored", "signal", signal, "reason", "EntriesPerDirection");
                return null;
            }
            Order order = new Order();
            order.Name = signal;
            order.IsEntry = true;
            order.OrderAction = action;
            order.OrderType = OrderType.Market;
            order.Quantity = quantity;
            SimEmit("order", "name", signal, "action", action.ToString(), "type", "Market", "quantity", quantity);
            SimUpdate(order, OrderState.Submitted, ErrorCode.NoError, "");
            SimUpdate(order, OrderState.Accepted, ErrorCode.NoError, "");
            SimUpdate(order, OrderState.Working, ErrorCode.NoError, "");
            SimWorking.Add(order);
            if (SimLateFlatUpdates && SimLatePositionUpdates.Count > 0)
            {
                // A flat update of the previous trade arrives now, inside EnterLong.
                List<Action> late = new List<Action>(SimLatePositionUpdates);
                SimLatePositionUpdates.Clear();
                foreach (Action a in late) a();
            }
            if (SimFillInsideEnter) SimFill(order, side > 0 ? SimAsk : SimBid);
            return order;
        }

        private Order SimExitMarket(MarketPosition from, int quantity, string signalName, string fromEntrySignal)
        {
            if (Position.MarketPosition != from || quantity <= 0) return null;
            Order order = new Order();
            order.Name = signalName;
            order.FromEntrySignal = fromEntrySignal;
            order.OrderAction = from == MarketPosition.Long ? OrderAction.Sell : OrderAction.BuyToCover;
            order.OrderType = OrderType.Market;
            order.Quantity = Math.Min(quantity, Position.Quantity);
            SimEmit("order", "name", signalName, "action", order.OrderAction.ToString(), "type", "Market", "quantity", order.Quantity);
            SimUpdate(order, OrderState.Submitted, ErrorCode.NoError, "");
            SimUpdate(order, OrderState.Working, ErrorCode.NoError, "");
            SimWorking.Add(order);
            return order;
        }

        private static bool SimIsSetOrder(Order o) { return o.Name == "Stop loss" || o.Name == "Profit target"; }

        /// <summary>Help Guide, "Managed Approach", internal order handling rules: "Methods that
        /// generate orders to exit a position will be ignored if a position is open and an
        /// order submitted by a set method (SetStopLoss() for example) is active", and "Set()
        /// methods that generate orders to exit a position will be ignored if a position is
        /// open and an order submitted by a non market order exit method (ExitLongLimit() for
        /// example) is active". Returns the rule broken, or null.</summary>
        private string SimManagedRule(bool fromSetMethod)
        {
            if (Position.MarketPosition == MarketPosition.Flat) return null;
            foreach (Order o in SimWorking)
            {
                if (o.IsEntry) continue;
                if (!fromSetMethod && SimIsSetOrder(o))
                    return "exit method ignored: a Set() order (" + o.Name + ") is active";
                if (fromSetMethod && !SimIsSetOrder(o) && o.OrderType != OrderType.Market)
                    return "Set() order ignored: a non-market exit order (" + o.Name + ") is active";
            }
            return null;
        }

        private Order SimExitWorking(OrderAction action, OrderType type, int quantity, double price, string signalName, string fromEntrySignal, bool liveUntilCancelled)
        {
            string rule = SimManagedRule(false);
            if (rule != null)
            {
                SimEmit("order_ignored", "name", signalName, "rule", rule);
                return null;
            }
            foreach (Order existing in SimWorking)
                if (existing.Name == signalName && existing.OrderType == type)
                {
                    SimChange(existing, price);
                    return existing;
                }
            Order order = new Order();
            order.Name = signalName;
            order.FromEntrySignal = fromEntrySignal;
            order.OrderAction = action;
            order.OrderType = type;
            order.Quantity = quantity;
            order.LiveUntilCancelled = liveUntilCancelled;
            if (type == OrderType.StopMarket) order.StopPrice = price; else order.LimitPrice = price;
            SimEmit("order", "name", signalName, "action", action.ToString(), "type", type.ToString(), "quantity", quantity, "price", price);
            SimSubmitWorking(order);
            return order;
        }

        /// <summary>Stops on the wrong side of the market are rejected (broker rule).</summary>
        private string SimStopProblem(Order order, double stopPrice)
        {
            if (order.OrderType != OrderType.StopMarket) return null;
            if (order.IsLong ? stopPrice <= SimAsk : stopPrice >= SimBid)
                return string.Format(CultureInfo.InvariantCulture, "{0} stop at {1} is on the wrong side of the market (bid {2}, ask {3})",
                    order.IsLong ? "buy" : "sell", stopPrice, SimBid, SimAsk);
            return null;
        }

        private void SimSubmitWorking(Order order)
        {
            SimUpdate(order, OrderState.Submitted, ErrorCode.NoError, "");
            string problem = SimStopProblem(order, order.StopPrice);
            if (problem != null)
            {
                SimReject(order, problem);
                return;
            }
            SimUpdate(order, OrderState.Accepted, ErrorCode.NoError, "");
            SimUpdate(order, OrderState.Working, ErrorCode.NoError, "");
            SimWorking.Add(order);
        }

        private void SimChange(Order order, double price)
        {
            if (order.OrderType == OrderType.StopMarket && order.StopPrice == price) return;
            if (order.OrderType == OrderType.Limit && order.LimitPrice == price) return;
            SimEmit("order_change", "name", order.Name, "price", price);
            string problem = SimStopProblem(order, price);
            if (problem == null && SimRejectStopChanges && order.OrderType == OrderType.StopMarket)
                problem = "the broker rejected the change";
            if (problem != null)
            {
                SimReject(order, problem);
                return;
            }
            if (order.OrderType == OrderType.StopMarket) order.StopPrice = price; else order.LimitPrice = price;
            SimUpdate(order, OrderState.ChangeSubmitted, ErrorCode.NoError, "");
            SimUpdate(order, OrderState.Working, ErrorCode.NoError, "");
        }

        private void SimReject(Order order, string why)
        {
            SimWorking.Remove(order);
            SimEmit("rejected", "name", order.Name, "why", why);
            SimUpdate(order, OrderState.Rejected, ErrorCode.OrderRejected, why);
            if (RealtimeErrorHandling == RealtimeErrorHandling.StopCancelClose)
                SimStopCancelClose("order rejected: " + why);
        }

        /// <summary>RealtimeErrorHandling.StopCancelClose: cancel, flatten, terminate.</summary>
        internal void SimStopCancelClose(string why)
        {
            if (State == State.Terminated) return;
            SimEmit("strategy_stopped", "why", why);
            foreach (Order o in SimWorking.ToArray()) SimCancel(o);
            if (Position.MarketPosition != MarketPosition.Flat)
            {
                Order flatten = new Order();
                flatten.Name = "Close position";
                flatten.OrderAction = Position.MarketPosition == MarketPosition.Long ? OrderAction.Sell : OrderAction.BuyToCover;
                flatten.OrderType = OrderType.Market;
                flatten.Quantity = Position.Quantity;
                SimFill(flatten, Position.MarketPosition == MarketPosition.Long ? SimBid : SimAsk);
            }
            SimSetState(State.Terminated);
        }

        private void SimCancel(Order order)
        {
            SimWorking.Remove(order);
            SimUpdate(order, OrderState.Cancelled, ErrorCode.NoError, "");
        }

        private void SimUpdate(Order order, OrderState orderState, ErrorCode error, string comment)
        {
            order.OrderState = orderState;
            OnOrderUpdate(order, order.LimitPrice, order.StopPrice, order.Quantity, order.Filled, order.AverageFillPrice,
                orderState, SimNow, error, comment);
        }

        internal DateTime SimNow;

        /// <summary>One market tick: bid = price, ask = price + one tick; working orders react.</summary>
        internal void SimTick(double price)
        {
            SimBid = price;
            SimAsk = price + TickSize;
            foreach (Order o in SimWorking.ToArray())
            {
                if (!SimWorking.Contains(o)) continue;
                if (o.OrderType == OrderType.Market) SimFill(o, o.IsLong ? SimAsk : SimBid);
                else if (o.OrderType == OrderType.StopMarket && (o.IsLong ? SimAsk >= o.StopPrice : SimBid <= o.StopPrice))
                    SimFill(o, o.IsLong ? Math.Max(SimAsk, o.StopPrice) : Math.Min(SimBid, o.StopPrice));
                else if (o.OrderType == OrderType.Limit && (o.IsLong ? SimAsk <= o.LimitPrice : SimBid >= o.LimitPrice))
                    SimFill(o, o.LimitPrice);
            }
        }

        private void SimFill(Order order, double price)
        {
            SimWorking.Remove(order);
            if (order.OcoPartner != null && SimWorking.Contains(order.OcoPartner)) SimCancel(order.OcoPartner);
            int signedQuantity = order.IsLong ? order.Quantity : -order.Quantity;
            int before = Position.Signed;
            if (!order.IsEntry && Math.Abs(signedQuantity) > Math.Abs(before)) signedQuantity = -before; // never reverse on an exit
            int after = before + signedQuantity;
            double average = Position.AveragePrice;
            if (before == 0 || Math.Sign(after) != Math.Sign(before)) average = price;
            else if (Math.Abs(after) > Math.Abs(before)) average = (average * Math.Abs(before) + price * Math.Abs(signedQuantity)) / Math.Abs(after);
            if (before != 0 && Math.Abs(after) < Math.Abs(before) || Math.Sign(after) == -Math.Sign(before))
            {
                int closed = Math.Min(Math.Abs(before), Math.Abs(signedQuantity));
                double pnl = (price - Position.AveragePrice) * Math.Sign(before) * closed * Instrument.MasterInstrument.PointValue;
                SystemPerformance.RealTimeTrades.TradesPerformance.Currency.CumProfitValue += pnl;
                SystemPerformance.AllTrades.TradesPerformance.Currency.CumProfitValue += pnl;
                SystemPerformance.RealTimeTrades.Count++;
            }
            Position.SetSigned(after, average);
            Position account = Account.SimPosition;
            int accountAfter = account.Signed + signedQuantity;
            account.SetSigned(accountAfter, accountAfter == 0 ? 0 : (account.Signed == 0 ? price : account.AveragePrice));
            if (order.IsEntry) SimEntriesThisDirection = Math.Sign(after) == Math.Sign(before) ? SimEntriesThisDirection + 1 : 1;
            if (after == 0) SimEntriesThisDirection = 0;
            order.Filled = order.Quantity;
            order.AverageFillPrice = price;
            SimEmit("fill", "name", order.Name, "price", price, "quantity", order.Quantity, "position", after, "account_position", accountAfter);
            SimUpdate(order, OrderState.Filled, ErrorCode.NoError, "");
            Execution execution = new Execution();
            execution.Order = order;
            execution.Name = order.Name;
            execution.Price = price;
            execution.Quantity = order.Quantity;
            execution.MarketPosition = order.IsLong ? MarketPosition.Long : MarketPosition.Short;
            execution.Time = SimNow;
            OnExecutionUpdate(execution, "exec-" + order.OrderId, price, order.Quantity, execution.MarketPosition, order.OrderId, SimNow);
            if (order.IsEntry) SimSubmitBracket(order, price);
            MarketPosition mp = Position.MarketPosition;
            int quantity = Position.Quantity;
            double avg = Position.AveragePrice;
            Action update = delegate { OnPositionUpdate(Position, avg, quantity, mp); };
            if (mp == MarketPosition.Flat && SimLateFlatUpdates) SimLatePositionUpdates.Add(update);
            else update();
            if (mp == MarketPosition.Flat)
                foreach (Order o in SimWorking.ToArray())
                    if (!o.IsEntry && !o.LiveUntilCancelled) SimCancel(o);
        }

        private void SimSubmitBracket(Order entry, double fillPrice)
        {
            double stop, target;
            bool hasStop = SimStops.TryGetValue(entry.Name, out stop) || SimStops.TryGetValue("", out stop);
            bool hasTarget = SimTargets.TryGetValue(entry.Name, out target) || SimTargets.TryGetValue("", out target);
            Order stopOrder = null, targetOrder = null;
            OrderAction exit = entry.IsLong ? OrderAction.Sell : OrderAction.BuyToCover;
            if (hasStop)
            {
                stopOrder = new Order();
                stopOrder.Name = "Stop loss";
                stopOrder.FromEntrySignal = entry.Name;
                stopOrder.OrderAction = exit;
                stopOrder.OrderType = OrderType.StopMarket;
                stopOrder.StopPrice = stop;
                stopOrder.Quantity = entry.Quantity;
            }
            if (hasTarget)
            {
                targetOrder = new Order();
                targetOrder.Name = "Profit target";
                targetOrder.FromEntrySignal = entry.Name;
                targetOrder.OrderAction = exit;
                targetOrder.OrderType = OrderType.Limit;
                targetOrder.LimitPrice = target;
                targetOrder.Quantity = entry.Quantity;
            }
            string rule = SimManagedRule(true);
            if (rule != null && (stopOrder != null || targetOrder != null))
            {
                SimEmit("order_ignored", "name", entry.Name, "rule", rule);
                return;
            }
            if (stopOrder != null && targetOrder != null)
            {
                stopOrder.OcoPartner = targetOrder;
                targetOrder.OcoPartner = stopOrder;
            }
            if (stopOrder != null)
            {
                SimEmit("order", "name", stopOrder.Name, "action", exit.ToString(), "type", "StopMarket", "quantity", entry.Quantity, "price", stop);
                SimSubmitWorking(stopOrder);
                if (State == State.Terminated) return;
            }
            if (targetOrder != null)
            {
                SimEmit("order", "name", targetOrder.Name, "action", exit.ToString(), "type", "Limit", "quantity", entry.Quantity, "price", target);
                SimSubmitWorking(targetOrder);
            }
        }

        /// <summary>Strategy start in real time with the account's position ("Syncing Account Positions").</summary>
        internal void SimApplyStartBehavior()
        {
            if (StartBehavior == StartBehavior.AdoptAccountPosition && !IsAdoptAccountPositionAware)
            {
                // Help Guide, "StartBehavior": "In order to use AdoptAccountPosition you will
                // need to first set IsAdoptAccountPositionAware to true." The strategy does not
                // start (the double's reading of the rule: nothing is adopted, nothing trades).
                SimEmit("strategy_error", "why", "AdoptAccountPosition needs IsAdoptAccountPositionAware = true");
                SimSetState(State.Terminated);
                return;
            }
            Position account = Account.SimPosition;
            if (account.MarketPosition == MarketPosition.Flat) return;
            if (StartBehavior == StartBehavior.AdoptAccountPosition)
            {
                Position.SetSigned(account.Signed, account.AveragePrice);
                SimEmit("adopted", "position", account.Signed, "average", account.AveragePrice);
            }
            else if (StartBehavior == StartBehavior.ImmediatelySubmitSynchronizeAccount || StartBehavior == StartBehavior.WaitUntilFlatSynchronizeAccount)
            {
                SimEmit("account_synchronized", "closed", account.Signed);
                account.SetSigned(Position.Signed, Position.AveragePrice);
            }
        }
    }
}

namespace NinjaTrader.NinjaScript.Strategies
{
    public abstract class Strategy : NinjaTrader.NinjaScript.StrategyBase { }
}
