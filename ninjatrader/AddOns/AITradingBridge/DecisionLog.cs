// DecisionLog.cs -- the CSV of every decision, in Documents\NinjaTrader 8\AITradingBridge.
// A file held open by another program (a spreadsheet) does not turn logging off: the log
// moves to a new file name and says so.
// Part of the ai-trading-bridge NinjaScript add-on (see ninjatrader/README.md).

using System;
using System.Globalization;
using System.IO;
using System.Text;

namespace NinjaTrader.NinjaScript.AddOns.AITradingBridgeClient
{
    public sealed class AitbDecisionLog
    {
        public const string Header = "logged_at,bar_time,seq,action,outcome,warming_up,tries,resynced,latency_ms,age_ms,stop_price,target_price,trail_points,risk,result";
        private const int MaxAlternatives = 20;
        private readonly string folder;
        private readonly string baseName;
        private readonly Action<string> say;
        private int alternative = 1;

        /// <param name="folder">Folder of the log (created when missing).</param>
        /// <param name="baseName">File name without ".csv", e.g. "decisions-nt8-Sim101-NQ-1Minute".</param>
        /// <param name="say">Where to tell the trader about a change of file.</param>
        public AitbDecisionLog(string folder, string baseName, Action<string> say)
        {
            this.folder = folder;
            this.baseName = baseName;
            this.say = say ?? delegate(string s) { };
        }

        /// <summary>The file written now (null once logging gave up).</summary>
        public string Path
        {
            get
            {
                if (alternative > MaxAlternatives) return null;
                string name = alternative == 1 ? baseName : baseName + "-" + alternative.ToString(CultureInfo.InvariantCulture);
                return System.IO.Path.Combine(folder, name + ".csv");
            }
        }

        public void Append(AitbDecision d, double ageMs, string result)
        {
            StringBuilder row = new StringBuilder();
            row.Append(DateTime.Now.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)).Append(',')
               .Append(AitbJsonWriter.FormatTime(d.BarTime)).Append(',')
               .Append(d.Seq.ToString(CultureInfo.InvariantCulture)).Append(',')
               .Append(d.Name).Append(',').Append(d.Outcome).Append(',')
               .Append(d.WarmingUp ? "1" : "0").Append(',')
               .Append(d.Attempts.ToString(CultureInfo.InvariantCulture)).Append(',')
               .Append(d.Resynced ? "1" : "0").Append(',')
               .Append(d.LatencyMs.ToString("0.0", CultureInfo.InvariantCulture)).Append(',')
               .Append(ageMs.ToString("0.0", CultureInfo.InvariantCulture)).Append(',')
               .Append(Csv(d.StopPrice)).Append(',').Append(Csv(d.TargetPrice)).Append(',').Append(Csv(d.TrailPoints)).Append(',')
               .Append(d.RiskRule ?? "").Append(',')
               .Append('"').Append(result.Replace("\"", "'")).Append('"').AppendLine();
            while (Path != null)
            {
                string path = Path;
                try
                {
                    Directory.CreateDirectory(folder);
                    using (FileStream stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read))
                    {
                        byte[] text = Encoding.UTF8.GetBytes((stream.Length == 0 ? Header + Environment.NewLine : "") + row);
                        stream.Write(text, 0, text.Length);
                    }
                    return;
                }
                catch (IOException ex)
                {
                    // Held open by another program: move on to the next name, keep logging.
                    alternative++;
                    string next = Path;
                    say("decision log " + path + " cannot be written (" + ex.Message + ")"
                        + (next != null ? "; logging to " + next + " instead" : "; logging to the Output window only"));
                }
                catch (Exception ex)
                {
                    say("decision log " + path + " cannot be written (" + ex.Message + "); logging to the Output window only");
                    alternative = MaxAlternatives + 1;
                }
            }
        }

        private static string Csv(double value)
        {
            return double.IsNaN(value) ? "" : value.ToString("R", CultureInfo.InvariantCulture);
        }
    }
}
