// NinjaTraderStubs.cs -- compile-only model of the NinjaTrader 8 API members that
// ninjatrader/AITradingBridge.cs uses, so a misspelt member or a wrong signature fails
// the test suite on Linux instead of in the trader's NinjaScript Editor.
//
// Signatures follow the NinjaTrader 8 Help Guide (NinjaScript > Language Reference):
// OnStateChange, OnBarUpdate, OnExecutionUpdate(Execution, string, double, int,
// MarketPosition, string, DateTime), OnPositionUpdate(Position, double, int,
// MarketPosition), SetStopLoss(string, CalculationMode, double, bool),
// SetProfitTarget(string, CalculationMode, double), EnterLong/EnterShort(int, string)
// returning Order, TriggerCustomEvent(Action<object>, object), Bars.GetVolume returning
// long, Volume as a VolumeSeries of double, Time as a TimeSeries. Only members the
// strategy needs are modelled; bodies throw because nothing here is meant to run.
// Keep this file in step with the Help Guide, not with the strategy: it is the check.

using System;

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
    public static class Globals
    {
        /// <summary>Documents\NinjaTrader 8\ (with the trailing separator).</summary>
        public static string UserDataDir { get { throw new NotImplementedException(); } }
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

    public enum TimeInForce { Day, Gtc, Gtd, Ioc, Opg }

    public class MasterInstrument
    {
        public string Name { get { throw new NotImplementedException(); } }
        public double TickSize { get { throw new NotImplementedException(); } }
        public double PointValue { get { throw new NotImplementedException(); } }
        public double RoundToTickSize(double price) { throw new NotImplementedException(); }
    }

    public class Instrument
    {
        public string FullName { get { throw new NotImplementedException(); } }
        public MasterInstrument MasterInstrument { get { throw new NotImplementedException(); } }
    }

    public class Order
    {
        public string Name { get { throw new NotImplementedException(); } }
        public OrderState OrderState { get { throw new NotImplementedException(); } }
        public double AverageFillPrice { get { throw new NotImplementedException(); } }
        public int Filled { get { throw new NotImplementedException(); } }
    }

    public class Execution
    {
        public Order Order { get { throw new NotImplementedException(); } }
        public string Name { get { throw new NotImplementedException(); } }
        public double Price { get { throw new NotImplementedException(); } }
        public int Quantity { get { throw new NotImplementedException(); } }
        public MarketPosition MarketPosition { get { throw new NotImplementedException(); } }
        public DateTime Time { get { throw new NotImplementedException(); } }
    }

    public class Position
    {
        public MarketPosition MarketPosition { get { throw new NotImplementedException(); } }
        public int Quantity { get { throw new NotImplementedException(); } }
        public double AveragePrice { get { throw new NotImplementedException(); } }
        public Instrument Instrument { get { throw new NotImplementedException(); } }
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

    public class Bars
    {
        public int Count { get { throw new NotImplementedException(); } }
        public DateTime GetTime(int index) { throw new NotImplementedException(); }
        public double GetOpen(int index) { throw new NotImplementedException(); }
        public double GetHigh(int index) { throw new NotImplementedException(); }
        public double GetLow(int index) { throw new NotImplementedException(); }
        public double GetClose(int index) { throw new NotImplementedException(); }
        public long GetVolume(int index) { throw new NotImplementedException(); }
    }
}

// Namespaces of the standard NinjaScript template's using list, so either form compiles.
namespace NinjaTrader.Gui { internal sealed class StubNamespaceMarker { } }
namespace NinjaTrader.Gui.Chart { internal sealed class StubNamespaceMarker { } }
namespace NinjaTrader.Gui.SuperDom { internal sealed class StubNamespaceMarker { } }
namespace NinjaTrader.Gui.Tools { internal sealed class StubNamespaceMarker { } }
namespace NinjaTrader.Core.FloatingPoint { internal sealed class StubNamespaceMarker { } }
namespace NinjaTrader.NinjaScript.Indicators { internal sealed class StubNamespaceMarker { } }
namespace NinjaTrader.NinjaScript.DrawingTools { internal sealed class StubNamespaceMarker { } }

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

    public class PriceSeries : ISeries<double>
    {
        public double this[int barsAgo] { get { throw new NotImplementedException(); } }
        public int Count { get { throw new NotImplementedException(); } }
    }

    public class VolumeSeries : ISeries<double>
    {
        public double this[int barsAgo] { get { throw new NotImplementedException(); } }
        public int Count { get { throw new NotImplementedException(); } }
    }

    public class TimeSeries : ISeries<DateTime>
    {
        public DateTime this[int barsAgo] { get { throw new NotImplementedException(); } }
        public int Count { get { throw new NotImplementedException(); } }
    }

    /// <summary>Members of NinjaScript / NinjaScriptBase the strategy uses.</summary>
    public abstract class NinjaScriptBase
    {
        public string Name { get; set; }
        public string Description { get; set; }
        public State State { get { throw new NotImplementedException(); } }
        public Calculate Calculate { get; set; }
        public int CurrentBar { get { throw new NotImplementedException(); } }
        public int BarsInProgress { get { throw new NotImplementedException(); } }
        public Bars Bars { get { throw new NotImplementedException(); } }
        public BarsPeriod BarsPeriod { get { throw new NotImplementedException(); } }
        public Instrument Instrument { get { throw new NotImplementedException(); } }
        public ISeries<double> Open { get { throw new NotImplementedException(); } }
        public ISeries<double> High { get { throw new NotImplementedException(); } }
        public ISeries<double> Low { get { throw new NotImplementedException(); } }
        public ISeries<double> Close { get { throw new NotImplementedException(); } }
        public VolumeSeries Volume { get { throw new NotImplementedException(); } }
        public TimeSeries Time { get { throw new NotImplementedException(); } }
        public double TickSize { get { throw new NotImplementedException(); } }

        protected virtual void OnStateChange() { }
        protected virtual void OnBarUpdate() { }

        public void Print(object value) { throw new NotImplementedException(); }
        public void Log(string message, LogLevel logLevel) { throw new NotImplementedException(); }
        public void TriggerCustomEvent(Action<object> customEvent, object state) { throw new NotImplementedException(); }
        public void TriggerCustomEvent(Action<object> customEvent, int barsSeriesIndex, object state) { throw new NotImplementedException(); }
    }

    /// <summary>Members of StrategyBase the strategy uses (managed order approach).</summary>
    public abstract class StrategyBase : NinjaScriptBase
    {
        public int BarsRequiredToTrade { get; set; }
        public int EntriesPerDirection { get; set; }
        public EntryHandling EntryHandling { get; set; }
        public bool IsExitOnSessionCloseStrategy { get; set; }
        public int ExitOnSessionCloseSeconds { get; set; }
        public bool IsInstantiatedOnEachOptimizationIteration { get; set; }
        public StartBehavior StartBehavior { get; set; }
        public RealtimeErrorHandling RealtimeErrorHandling { get; set; }
        public StopTargetHandling StopTargetHandling { get; set; }
        public ConnectionLossHandling ConnectionLossHandling { get; set; }
        public TimeInForce TimeInForce { get; set; }
        public bool TraceOrders { get; set; }
        public Position Position { get { throw new NotImplementedException(); } }

        protected virtual void OnExecutionUpdate(Execution execution, string executionId, double price, int quantity,
            MarketPosition marketPosition, string orderId, DateTime time) { }
        protected virtual void OnPositionUpdate(Position position, double averagePrice, int quantity, MarketPosition marketPosition) { }
        protected virtual void OnOrderUpdate(Order order, double limitPrice, double stopPrice, int quantity, int filled,
            double averageFillPrice, OrderState orderState, DateTime time, ErrorCode error, string comment) { }

        public Order EnterLong() { throw new NotImplementedException(); }
        public Order EnterLong(string signalName) { throw new NotImplementedException(); }
        public Order EnterLong(int quantity) { throw new NotImplementedException(); }
        public Order EnterLong(int quantity, string signalName) { throw new NotImplementedException(); }
        public Order EnterShort() { throw new NotImplementedException(); }
        public Order EnterShort(string signalName) { throw new NotImplementedException(); }
        public Order EnterShort(int quantity) { throw new NotImplementedException(); }
        public Order EnterShort(int quantity, string signalName) { throw new NotImplementedException(); }
        public Order ExitLong() { throw new NotImplementedException(); }
        public Order ExitLong(string signalName, string fromEntrySignal) { throw new NotImplementedException(); }
        public Order ExitShort() { throw new NotImplementedException(); }
        public Order ExitShort(string signalName, string fromEntrySignal) { throw new NotImplementedException(); }

        public void SetStopLoss(CalculationMode mode, double value) { throw new NotImplementedException(); }
        public void SetStopLoss(string fromEntrySignal, CalculationMode mode, double value, bool isSimulatedStop) { throw new NotImplementedException(); }
        public void SetProfitTarget(CalculationMode mode, double value) { throw new NotImplementedException(); }
        public void SetProfitTarget(CalculationMode mode, double value, bool isMIT) { throw new NotImplementedException(); }
        public void SetProfitTarget(string fromEntrySignal, CalculationMode mode, double value) { throw new NotImplementedException(); }
        public void SetProfitTarget(string fromEntrySignal, CalculationMode mode, double value, bool isMIT) { throw new NotImplementedException(); }
    }
}

namespace NinjaTrader.Cbi
{
    public enum ErrorCode { NoError, Panic, UnableToCancelOrder, UnableToChangeOrder, UnableToSubmitOrder, UserAbort, OrderRejected }
}

namespace NinjaTrader.NinjaScript.Strategies
{
    public abstract class Strategy : NinjaTrader.NinjaScript.StrategyBase { }
}
